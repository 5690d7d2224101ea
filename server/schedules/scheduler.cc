#include "server/schedules/scheduler.h"

namespace jobstream::schedules {

void Scheduler::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    // A full turn (as many as it reads at once) means more may be due: go again at once.
    const bool more = leading_() && manager_->FireDue(absl::Now());
    absl::MutexLock lock(&mu_);
    if (!more) mu_.AwaitWithTimeout(absl::Condition(&stop_), tick_);
  }
}

}  // namespace jobstream::schedules
