// FanoutPool: threads that wake watchers. Publishing only queues the wake-ups, so the
// thread that publishes (the committer's delivery thread) never does a watcher's
// network write itself; with thousands of watchers that would serialize every write on
// one thread.
#pragma once

#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/watch/subscription.h"

namespace jobstream::watch {

class FanoutPool {
 public:
  explicit FanoutPool(int threads);
  ~FanoutPool();  // runs what is queued, then joins

  // Calls Notify() on each subscription, on a pool thread.
  void Post(std::vector<std::shared_ptr<Subscription>> subs) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::vector<std::shared_ptr<Subscription>>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace jobstream::watch
