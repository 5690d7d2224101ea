#include "absl/strings/string_view.h"
#include "server/jobs/runner.h"

#include <pthread.h>

namespace jobstream::jobs {
namespace {

class ManagedContext : public JobContext {
 public:
  ManagedContext(JobManager* manager, const Lease& lease) : manager_(manager), lease_(lease) {}

  const google::protobuf::Struct& params() const override { return *lease_.params; }
  void Step(absl::string_view name, int index, int count, double fraction) override {
    manager_->ReportStep(lease_, name, index, count, fraction);
  }
  void Progress(double fraction, absl::string_view message) override {
    manager_->ReportProgress(lease_, fraction, message);
  }
  bool Cancelled() const override { return lease_.control->stop.HasBeenNotified(); }
  bool SleepFor(absl::Duration d) override {
    return !lease_.control->stop.WaitForNotificationWithTimeout(d);
  }

 private:
  JobManager* const manager_;
  const Lease& lease_;
};

}  // namespace

Runner::Runner(JobManager* manager, const JobTypes* types, int threads)
    : manager_(manager), types_(types), thread_count_(threads) {}

Runner::~Runner() { Stop(); }

void Runner::Start() {
  for (int i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "js-runner");
      Loop();
    });
  }
}

void Runner::Stop() {
  if (threads_.empty()) return;  // not started, or stopped already
  manager_->StopRunning();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Runner::Loop() {
  const std::vector<std::string> types = types_->InServerTypes();
  while (std::optional<Lease> lease = manager_->Acquire(types)) {
    const JobType* type = types_->Find(lease->type);
    ManagedContext ctx(manager_, *lease);
    absl::StatusOr<google::protobuf::Value> outcome =
        type != nullptr && type->handler != nullptr
            ? type->handler->Run(ctx)
            : absl::FailedPreconditionError("no handler for type " + lease->type);
    manager_->Finish(*lease, std::move(outcome));
  }
}

}  // namespace jobstream::jobs
