// Shared by the bench tools: child processes, channels, closed-loop load, percentiles.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/jobs.grpc.pb.h"
#include "jobstream/v1/workers.grpc.pb.h"

namespace jobstream::bench {

struct Child {
  pid_t pid = -1;
  std::string address;
  void Stop();  // SIGTERM, and wait
};

// The build dir holding server/: `flag` if given, else the one this binary (argv0) is in.
std::string BinDir(const char* argv0, const std::string& flag);
// Runs bench/baseline/`script` (a Celery baseline) with Debian's python3 and `args`: its
// exit code and what it printed (its errors go to this process's stderr).
std::pair<int, std::string> RunBaseline(const std::string& script, const std::string& args);

// Starts a binary that prints "listening on HOST:PORT" first.
Child Spawn(const std::vector<std::string>& argv);
// Resident memory of a process, KB: now, at its peak so far, or any /proc status field.
int64_t RssKb(pid_t pid);
int64_t PeakRssKb(pid_t pid);
// utime + stime of a process so far, seconds.
double CpuSeconds(pid_t pid);
int64_t StatusKb(pid_t pid, const std::string& field);
// `n` channels, one connection each; plaintext unless `credentials` say otherwise.
std::vector<std::shared_ptr<grpc::Channel>> Channels(
    const std::string& address, int n,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

struct Load {
  int64_t ok = 0;
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  std::vector<double> latency_us;
  double rate() const { return ok / seconds; }
  double percentile(double q);
};

// Starts one call; calls done(status) when it completes.
using StartCall = std::function<void(std::function<void(const grpc::Status&)>)>;

// Keeps `in_flight` calls going for `duration` (closed loop).
Load ClosedLoop(int in_flight, absl::Duration duration, const StartCall& start);

template <typename Req, typename Resp>
struct Call {
  grpc::ClientContext ctx;
  Req request;
  Resp response;
};

double Percentile(std::vector<double>& v, double q);

// How a bench worker ends its jobs: a CompleteJob call each, or carried by its next
// LeaseJob (one round trip a lease).
enum class Ending { kCompleteJob, kOnLease };

// An external worker: leases up to `max_jobs` jobs of `type` (waiting up to 200 ms) and
// completes them all at once, as a worker handling a batch in parallel would, until
// `stop`. `authorization` (if any) goes with each call.
void WorkerLoop(v1::WorkerService::Stub* stub, const std::string& type, int max_jobs,
                const std::atomic<bool>* stop, std::atomic<int64_t>* completed,
                std::atomic<int64_t>* errors, const std::string& authorization = "",
                Ending ending = Ending::kCompleteJob);

// End to end: 64 submitters (on channels 0-3) keep at most 4,096 jobs of `type` waiting,
// and `workers` WorkerLoops (on channels 4-7) lease `lease_size` at a time; after a second's
// warm-up, what `duration` sees. Every job submitted is completed before it returns.
struct EndToEndRates {
  double submitted = 0;  // per second
  double completed = 0;  // per second
  int64_t all_completed = 0;  // warm-up and drain included
  std::vector<double> submit_latency_us;
};
EndToEndRates EndToEnd(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                       const std::string& type, int workers, int lease_size,
                       absl::Duration duration, Ending ending = Ending::kCompleteJob);

// Durable Submits of a demo.steps job scheduled a day ahead (so only Submit is measured),
// spread over `channels`; `authorization` (if any) goes with each call.
StartCall SubmitCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                      const std::string& authorization = "");

// A watcher of one job, on the callback API; counts events and records commit->receive
// latency of PROGRESS events. `authorization` (if any) goes with the call.
class Watcher : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  struct Stats {
    absl::Mutex mu;
    int64_t events = 0;
    int64_t progress = 0;
    std::vector<double> latency_us;
    int done = 0;
    int first_seen = 0;
    bool record = true;
  };
  Watcher(v1::JobService::Stub* stub, const std::string& job_id, Stats* stats,
          const std::string& authorization = "");
  void Cancel() { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status&) override;

 private:
  Stats* const stats_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
  bool seen_ = false;
};

// `n` watchers of `job_id`, spread over `stubs`, held until every one has finished or
// `timeout` passed (the rest are then cancelled); what they saw is in `stats`.
void WatchToEnd(const std::vector<std::unique_ptr<v1::JobService::Stub>>& stubs,
                const std::string& job_id, int n, absl::Duration timeout, Watcher::Stats* stats,
                const std::string& authorization = "");

}  // namespace jobstream::bench
