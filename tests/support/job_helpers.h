// Helpers of the e2e tests that run programs as jobs: scripts made at test time, a job
// followed to its end, polling for a state, and the processes a script left pids of.
#pragma once

#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "client/job_client.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace jobstream::testing {

// Writes an executable /bin/sh script at `path`; returns the path.
inline std::string WriteScript(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  chmod(path.c_str(), 0755);
  return path;
}

// A request of `type` with params given as JSON.
inline v1::SubmitRequest SubmitRequestOf(const std::string& type,
                                         const std::string& params_json = "{}") {
  v1::SubmitRequest request;
  request.set_type(type);
  EXPECT_TRUE(
      google::protobuf::util::JsonStringToMessage(params_json, request.mutable_params()).ok());
  return request;
}

// One WatchJob call to its end (no reconnect), with a deadline so nothing can hang.
struct Stream {
  std::vector<v1::JobEvent> events;
  grpc::Status status;
  std::vector<int64_t> sequences() const {
    std::vector<int64_t> s;
    for (const auto& e : events) s.push_back(e.sequence());
    return s;
  }
};
// `on_event`, if given, sees each event as it arrives (e.g. to act once the job is running).
inline Stream WatchOnce(const std::shared_ptr<grpc::Channel>& channel, const std::string& id,
                        int64_t after, absl::Duration timeout = absl::Seconds(30),
                        const std::function<void(const v1::JobEvent&)>& on_event = nullptr) {
  auto stub = v1::JobService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(timeout));
  v1::WatchJobRequest request;
  request.set_job_id(id);
  request.set_after_sequence(after);
  auto reader = stub->WatchJob(&ctx, request);
  Stream out;
  v1::JobEvent e;
  while (reader->Read(&e)) {
    out.events.push_back(e);
    if (on_event) on_event(e);
  }
  out.status = reader->Finish();
  return out;
}

// A demo.steps job: its three steps of `step_ms` each, in `ticks` progress reports.
inline v1::SubmitRequest DemoSteps(int ticks, int step_ms) {
  v1::SubmitRequest request;
  request.set_type("demo.steps");
  (*request.mutable_params()->mutable_fields())["ticks"].set_number_value(ticks);
  (*request.mutable_params()->mutable_fields())["step_ms"].set_number_value(step_ms);
  return request;
}

// Every event of the job until it ends. Never empty: a watch that saw nothing fails the
// test and yields one blank event, so callers may look at back().
inline std::vector<v1::JobEvent> FollowJob(client::JobClient& client, const std::string& id) {
  std::vector<v1::JobEvent> events;
  auto end = client.Watch(id, 0, [&](const v1::JobEvent& e) { events.push_back(e); });
  EXPECT_TRUE(end.ok()) << end.status();
  if (events.empty()) events.emplace_back();
  return events;
}

// Polls GetStatus until `pred` holds or `limit` passes; returns the job as last seen.
template <typename P>
v1::Job WaitForJob(client::JobClient& client, const std::string& id, P pred,
                   absl::Duration limit = absl::Seconds(15)) {
  const absl::Time deadline = absl::Now() + limit;
  auto job = client.GetStatus(id);
  while (job.ok() && !pred(*job) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    job = client.GetStatus(id);
  }
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? *job : v1::Job();
}

// The pid a script wrote to `path`, once it is there.
inline pid_t ReadPidFile(const std::string& path) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    int pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) && pid > 0) return pid;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ADD_FAILURE() << "no pid in " << path;
  return -1;
}

// True once no process has the pid (it may linger briefly as it is being killed).
inline bool ProcessGone(pid_t pid) {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    if (pid > 0 && kill(pid, 0) != 0) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

}  // namespace jobstream::testing
