#include "server/watch/fanout_pool.h"

#include <pthread.h>

namespace jobstream::watch {

namespace {
// Wake-ups per task: large enough to amortize the queueing, small enough to spread a
// big fan-out over every pool thread.
constexpr size_t kChunk = 64;
}  // namespace

FanoutPool::FanoutPool(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "js-fanout");
      Loop();
    });
  }
}

FanoutPool::~FanoutPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void FanoutPool::Post(std::vector<std::shared_ptr<Subscription>> subs) {
  if (subs.empty()) return;
  absl::MutexLock lock(&mu_);
  if (subs.size() <= kChunk) {
    tasks_.push_back(std::move(subs));
    return;
  }
  for (size_t i = 0; i < subs.size(); i += kChunk) {
    auto end = subs.begin() + std::min(subs.size(), i + kChunk);
    tasks_.emplace_back(std::make_move_iterator(subs.begin() + i), std::make_move_iterator(end));
  }
}

void FanoutPool::Loop() {
  for (;;) {
    std::vector<std::shared_ptr<Subscription>> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](FanoutPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return !p->tasks_.empty() || p->stopping_;
          },
          this));
      if (tasks_.empty()) return;  // stopping, and nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    for (const auto& sub : task) sub->Notify();
  }
}

}  // namespace jobstream::watch
