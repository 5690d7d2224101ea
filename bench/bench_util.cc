#include "bench/bench_util.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/process.h"

namespace jobstream::bench {

void Child::Stop() {
  jobstream::testing::StopProcess(pid, SIGTERM);
  pid = -1;
}

Child Spawn(const std::vector<std::string>& argv) {
  jobstream::testing::Listening child = jobstream::testing::SpawnListening(argv);
  return {child.pid, child.address};
}

int64_t RssKb(pid_t pid) { return StatusKb(pid, "VmRSS:"); }
int64_t PeakRssKb(pid_t pid) { return StatusKb(pid, "VmHWM:"); }

double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 0; i < 13 && fields >> field; ++i) {
    if (i == 11) utime = std::stod(field);
    if (i == 12) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int64_t StatusKb(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (status >> key) {
    if (key == field) {
      int64_t kb;
      status >> kb;
      return kb;
    }
    status.ignore(1 << 20, '\n');
  }
  return -1;
}

std::vector<std::shared_ptr<grpc::Channel>> Channels(
    const std::string& address, int n, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("jobstream.bench.channel", i);  // distinct args: one connection each
    args.SetMaxReceiveMessageSize(-1);
    channels.push_back(grpc::CreateCustomChannel(address, credentials, args));
  }
  return channels;
}

EndToEndRates EndToEnd(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                       const std::string& type, int workers, int lease_size,
                       absl::Duration duration, Ending ending) {
  // Submitters keep at most kBacklog jobs waiting, so what is measured is the rate the
  // whole path sustains, not how fast a queue fills.
  constexpr int64_t kBacklog = 4096;
  std::atomic<bool> stop{false}, stop_submitting{false};
  std::atomic<int64_t> completed{0}, errors{0}, submitted{0};
  std::vector<std::unique_ptr<v1::WorkerService::Stub>> worker_stubs;
  std::vector<std::unique_ptr<v1::JobService::Stub>> submit_stubs;
  std::vector<std::thread> threads, submitters;
  for (int w = 0; w < workers; ++w) {
    worker_stubs.push_back(v1::WorkerService::NewStub(channels[4 + w % 4]));
    threads.emplace_back(WorkerLoop, worker_stubs.back().get(), type, lease_size, &stop,
                         &completed, &errors, "", ending);
  }
  absl::Mutex latency_mu;
  EndToEndRates rates;
  for (int t = 0; t < 64; ++t) {
    submit_stubs.push_back(v1::JobService::NewStub(channels[t % 4]));
    submitters.emplace_back([&, stub = submit_stubs.back().get()] {
      std::vector<double> mine;
      while (!stop_submitting) {
        if (submitted.load() - completed.load() > kBacklog) {
          absl::SleepFor(absl::Milliseconds(1));
          continue;
        }
        v1::SubmitRequest request;
        request.set_type(type);
        (*request.mutable_params()->mutable_fields())["n"].set_number_value(submitted.load());
        v1::Job job;
        grpc::ClientContext ctx;
        const absl::Time t0 = absl::Now();
        if (stub->Submit(&ctx, request, &job).ok()) {
          ++submitted;
          mine.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
        }
      }
      absl::MutexLock lock(&latency_mu);
      rates.submit_latency_us.insert(rates.submit_latency_us.end(), mine.begin(), mine.end());
    });
  }
  absl::SleepFor(absl::Seconds(1));  // warm up
  const int64_t submitted_before = submitted.load(), completed_before = completed.load();
  const absl::Time begin = absl::Now();
  absl::SleepFor(duration);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  rates.submitted = (submitted.load() - submitted_before) / seconds;
  rates.completed = (completed.load() - completed_before) / seconds;
  stop_submitting = true;
  for (auto& t : submitters) t.join();
  const absl::Time drain_end = absl::Now() + absl::Seconds(60);
  while (completed.load() < submitted.load() && absl::Now() < drain_end) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  stop = true;
  for (auto& t : threads) t.join();
  if (errors.load() > 0) std::cerr << "worker call errors: " << errors.load() << "\n";
  rates.all_completed = completed.load();
  return rates;
}

StartCall SubmitCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                      const std::string& authorization) {
  auto stubs = std::make_shared<std::vector<std::unique_ptr<v1::JobService::Stub>>>();
  for (auto& c : channels) stubs->push_back(v1::JobService::NewStub(c));
  auto next = std::make_shared<std::atomic<size_t>>(0);
  v1::SubmitRequest request;
  request.set_type("demo.steps");
  request.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(24)));
  (*request.mutable_params()->mutable_fields())["step_ms"].set_number_value(0);
  return [stubs, next, request, authorization](std::function<void(const grpc::Status&)> done) {
    auto* call = new Call<v1::SubmitRequest, v1::Job>;
    if (!authorization.empty()) call->ctx.AddMetadata("authorization", authorization);
    call->request = request;
    (*stubs)[(*next)++ % stubs->size()]->async()->Submit(
        &call->ctx, &call->request, &call->response, [call, done](grpc::Status s) {
          done(s);
          delete call;
        });
  };
}

double Load::percentile(double q) { return Percentile(latency_us, q); }

Watcher::Watcher(v1::JobService::Stub* stub, const std::string& job_id, Stats* stats,
                 const std::string& authorization)
    : stats_(stats) {
  if (!authorization.empty()) ctx_.AddMetadata("authorization", authorization);
  request_.set_job_id(job_id);
  stub->async()->WatchJob(&ctx_, &request_, this);
  StartRead(&event_);
  StartCall();
}

void Watcher::OnReadDone(bool ok) {
  if (!ok) return;
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&stats_->mu);
    if (!seen_) ++stats_->first_seen;
    seen_ = true;
    ++stats_->events;
    if (event_.type() == v1::JobEvent::PROGRESS && stats_->record) {
      ++stats_->progress;
      const absl::Time committed = v1::ToTime(event_.time());
      stats_->latency_us.push_back(absl::ToDoubleMicroseconds(now - committed));
    }
  }
  StartRead(&event_);
}

void Watcher::OnDone(const grpc::Status&) {
  absl::MutexLock lock(&stats_->mu);
  ++stats_->done;
}

Load ClosedLoop(int in_flight, absl::Duration duration, const StartCall& start) {
  absl::Mutex mu;
  Load load;
  int active = in_flight;
  const absl::Time begin = absl::Now();
  const absl::Time end = begin + duration;
  std::function<void()> launch = [&] {
    const absl::Time t0 = absl::Now();
    start([&, t0](const grpc::Status& s) {
      const absl::Time now = absl::Now();
      bool again;
      {
        absl::MutexLock lock(&mu);
        if (s.ok()) {
          ++load.ok;
          load.latency_us.push_back(absl::ToDoubleMicroseconds(now - t0));
        } else if (load.errors++ == 0) {
          load.first_error = s.error_message();
        }
        again = now < end;
        if (!again) --active;
      }
      if (again) launch();
    });
  };
  for (int i = 0; i < in_flight; ++i) launch();
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(+[](int* a) { return *a == 0; }, &active));
  load.seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  return load;
}

std::pair<int, std::string> RunBaseline(const std::string& script, const std::string& args) {
  const std::string root = std::filesystem::path(__FILE__).parent_path().parent_path();
  return testing::RunCommand("/usr/bin/python3 " + root + "/bench/baseline/" + script + " " + args);
}

std::string BinDir(const char* argv0, const std::string& flag) {
  if (!flag.empty()) return flag;
  const std::string self = argv0;
  return self.substr(0, self.rfind('/')) + "/..";
}

void WorkerLoop(v1::WorkerService::Stub* stub, const std::string& type, int max_jobs,
                const std::atomic<bool>* stop, std::atomic<int64_t>* completed,
                std::atomic<int64_t>* errors, const std::string& authorization, Ending ending) {
  google::protobuf::RepeatedPtrField<v1::JobEnding> finished;  // for the next lease
  auto count = [&](const google::protobuf::RepeatedPtrField<v1::JobEndingResult>& results) {
    for (const auto& r : results) {
      if (r.error().code() == 0) ++*completed; else ++*errors;
    }
  };
  while (!stop->load()) {
    v1::LeaseJobRequest request;
    request.add_types(type);
    request.set_worker_id("bench");
    request.set_max_jobs(max_jobs);
    request.mutable_wait()->set_nanos(200'000'000);
    request.mutable_endings()->Swap(&finished);
    v1::LeaseJobResponse response;
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    if (!stub->LeaseJob(&ctx, request, &response).ok()) {
      ++*errors;
      continue;
    }
    count(response.ended());
    if (ending == Ending::kOnLease) {
      for (const auto& leased : response.jobs()) {
        auto* complete = finished.Add()->mutable_complete();
        complete->set_lease_id(leased.lease_id());
        complete->mutable_result()->set_number_value(1);
      }
      continue;
    }
    absl::Mutex mu;
    int pending = response.jobs_size();
    for (const auto& leased : response.jobs()) {
      auto* call = new Call<v1::CompleteJobRequest, v1::Job>;
      if (!authorization.empty()) call->ctx.AddMetadata("authorization", authorization);
      call->request.set_lease_id(leased.lease_id());
      call->request.mutable_result()->set_number_value(1);
      stub->async()->CompleteJob(&call->ctx, &call->request, &call->response,
                                 [&, call](grpc::Status s) {
                                   if (s.ok()) ++*completed; else ++*errors;
                                   delete call;
                                   absl::MutexLock lock(&mu);
                                   --pending;
                                 });
    }
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* p) { return *p == 0; }, &pending));
  }
  if (finished.empty()) return;
  v1::EndJobsRequest last;  // what was leased last, ended on the way out
  last.mutable_endings()->Swap(&finished);
  v1::EndJobsResponse response;
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  if (stub->EndJobs(&ctx, last, &response).ok()) count(response.results()); else ++*errors;
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

void WatchToEnd(const std::vector<std::unique_ptr<v1::JobService::Stub>>& stubs,
                const std::string& job_id, int n, absl::Duration timeout, Watcher::Stats* stats,
                const std::string& authorization) {
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < n; ++i) {
    watchers.push_back(
        std::make_unique<Watcher>(stubs[i % stubs.size()].get(), job_id, stats, authorization));
  }
  auto all_done = [&](absl::Time until) {
    for (;;) {
      {
        absl::MutexLock lock(&stats->mu);
        if (stats->done == n) return true;
      }
      if (absl::Now() > until) return false;
      absl::SleepFor(absl::Milliseconds(50));
    }
  };
  if (all_done(absl::Now() + timeout)) return;
  for (auto& w : watchers) w->Cancel();  // a watcher is freed only once its call ended
  all_done(absl::Now() + absl::Seconds(10));
}

}  // namespace jobstream::bench
