#include "server/jobs/runner.h"

#include <pthread.h>

namespace jobstream::jobs {
namespace {

class ManagedContext : public JobContext {
 public:
  ManagedContext(JobBackend* manager, const Attempt& attempt)
      : manager_(manager), attempt_(attempt) {}

  const std::string& job_id() const override { return attempt_.job_id; }
  int attempt() const override { return attempt_.attempt; }
  const google::protobuf::Struct& params() const override { return *attempt_.params; }
  std::string traceparent() const override { return attempt_.traceparent; }
  void Step(absl::string_view name, int index, int count, double fraction) override {
    v1::Progress p;
    p.set_step(std::string(name));
    p.set_step_index(index);
    p.set_step_count(count);
    p.set_fraction(fraction);
    manager_->Report(attempt_, p);
  }
  void Progress(double fraction, absl::string_view message) override {
    v1::Progress p;
    p.set_fraction(fraction);
    p.set_message(std::string(message));
    manager_->Report(attempt_, p);
  }
  void Report(const v1::Progress& progress) override { manager_->Report(attempt_, progress); }
  bool Cancelled() const override { return attempt_.control->stop.HasBeenNotified(); }
  bool SleepFor(absl::Duration d) override {
    return !attempt_.control->stop.WaitForNotificationWithTimeout(d);
  }
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> CreateArtifact(
      absl::string_view name, absl::string_view content_type) override {
    v1::ArtifactHeader header;
    header.set_name(std::string(name));
    header.set_content_type(std::string(content_type));
    return manager_->BeginArtifact(ArtifactHolder{attempt_.job_id, "", attempt_.control, {}},
                                   header);
  }

 private:
  JobBackend* const manager_;
  const Attempt& attempt_;
};

}  // namespace

Runner::Runner(JobBackend* manager, const JobTypes* types, int threads)
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
  while (std::optional<Attempt> attempt = manager_->Acquire(types)) {
    const JobType* type = types_->Find(attempt->type);
    ManagedContext ctx(manager_, *attempt);
    absl::StatusOr<google::protobuf::Value> outcome =
        type != nullptr && type->handler != nullptr
            ? type->handler->Run(ctx)
            : absl::FailedPreconditionError("no handler for type " + attempt->type);
    manager_->Finish(*attempt, std::move(outcome));
  }
}

}  // namespace jobstream::jobs
