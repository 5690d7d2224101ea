// BatchWriter: items posted from any thread, written in batches by a few named threads;
// while one batch is being written the next gathers (group commit). Used where each write
// is a transaction whose commit costs more than its rows: PostgreSQL's Submits, workers'
// reports and ends.
#pragma once

#include <pthread.h>

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace jobstream::util {

template <typename T>
class BatchWriter {
 public:
  using Write = std::function<void(std::vector<T>& batch)>;

  // `threads` threads named `name` (15 characters at most) each take up to `max_batch`
  // items at a time, in the order posted, and pass them to `write`.
  BatchWriter(const std::string& name, int threads, size_t max_batch, Write write)
      : max_batch_(max_batch), write_(std::move(write)) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, name] {
        pthread_setname_np(pthread_self(), name.c_str());
        Loop();
      });
    }
  }
  ~BatchWriter() { Close(); }

  // Queues `item` (moved from); false, leaving it as it was, once closed.
  bool Post(T& item) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    queue_.push_back(std::move(item));
    return true;
  }

  // Refuses further posts, writes what is queued, and joins the threads.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    for (;;) {
      std::vector<T> batch;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](BatchWriter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return self->closed_ || !self->queue_.empty();
            },
            this));
        if (queue_.empty()) return;  // closed, and all written
        while (!queue_.empty() && batch.size() < max_batch_) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      write_(batch);
    }
  }

  const size_t max_batch_;
  const Write write_;
  absl::Mutex mu_;
  std::deque<T> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace jobstream::util
