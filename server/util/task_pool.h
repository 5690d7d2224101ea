// TaskPool: a few named threads running posted tasks in FIFO order. Used so that the
// committer's delivery thread — which must publish events in commit order — hands off
// everything that need not be ordered: waking watchers (each then does its own network
// write) and sending replies.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace jobstream::util {

class TaskPool {
 public:
  TaskPool(const std::string& name, int threads);
  ~TaskPool();  // runs what is queued, then joins

  void Post(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace jobstream::util
