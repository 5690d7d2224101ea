// Worker: `jobstream work`, an external worker that leases jobs of some types and runs a
// program for each, speaking the same line protocol as the server's exec runner (see
// ProgramLine in config.proto) — so one script runs unchanged in the server or here.
//
// Each of `concurrency` slots long-polls LeaseJob for one job at a time. While the
// program runs, its step and progress lines are reported (progress at most every
// 100 ms), and a heartbeat keeps the lease when it is silent. A cancel request, or a lost
// lease, stops the program (SIGTERM to its process group, SIGKILL after kill_grace). When
// the program succeeds, every file it left in $JOBSTREAM_OUTPUT_DIR is uploaded as an
// artifact (UploadArtifact) before the job is completed. On
// Stop() nothing new is leased; running programs get `drain` to finish, then are stopped
// and their jobs given back (ReleaseJob) without spending an attempt.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "server/exec/output_dir.h"
#include "server/exec/program.h"

namespace jobstream::client {

struct WorkerOptions {
  std::vector<std::string> types;
  std::vector<std::string> argv;  // argv[0] resolved (exec::ResolveProgram)
  int concurrency = 1;
  std::string worker_id;
  absl::Duration lease_duration = absl::ZeroDuration();  // zero: the type's
  absl::Duration poll_wait = absl::Seconds(30);
  absl::Duration drain = absl::Seconds(30);
  absl::Duration kill_grace = absl::Seconds(10);
  absl::Duration progress_interval = absl::Milliseconds(100);
};

class Worker {
 public:
  Worker(std::shared_ptr<grpc::Channel> channel, WorkerOptions options);

  // Runs until Stop() and every slot has finished or handed back its job. Fails if the
  // server refused to lease (an undeclared type, say): nothing would ever come.
  absl::Status Run();
  // Thread-safe and idempotent; from a signal-waiting thread, or a slot.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Jobs this worker ended (completed, failed or cancelled), for logs and tests.
  int64_t jobs_done() const { return jobs_done_.load(); }

 private:
  void Slot(int index);
  void RunJob(const v1::LeasedJob& leased);
  // Uploads every file in `dir` as an artifact; FAILED_PRECONDITION once the lease is lost.
  absl::Status UploadOutputs(const exec::OutputDir& dir, const std::string& lease_id,
                             const std::string& job_id, const absl::Time& lease_end,
                             const std::function<void()>& heartbeat);
  void Log(const std::string& line);

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  const WorkerOptions options_;
  absl::Notification stopping_;  // notified once, by Stop(), under mu_
  absl::Time drain_deadline_ = absl::InfiniteFuture();  // set before stopping_ is notified
  absl::Mutex mu_;
  std::set<grpc::ClientContext*> polls_ ABSL_GUARDED_BY(mu_);  // LeaseJob calls waiting
  absl::Status refused_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> jobs_done_{0};
};

}  // namespace jobstream::client
