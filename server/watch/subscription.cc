#include "server/watch/subscription.h"

#include "absl/strings/str_cat.h"

namespace jobstream::watch {

bool JobFilter::Matches(const v1::Job& status) const {
  if (!scope.Sees(status)) return false;
  if (!types.empty() && !types.contains(status.type())) return false;
  if (!states.empty() && !states.contains(status.state())) return false;
  for (const auto& [key, value] : labels) {
    auto it = status.labels().find(key);
    if (it == status.labels().end() || it->second != value) return false;
  }
  return true;
}

Subscription::Subscription(const storage::EventReader* store, std::string job_id, int64_t after,
                           int64_t catch_up_until, bool live, const WatchOptions& options)
    : options_(options),
      job_id_(std::move(job_id)),
      store_(store),
      live_(live),
      last_sent_(after),
      catch_up_until_(catch_up_until) {}

Subscription::Subscription(JobFilter filter, const WatchOptions& options)
    : options_(options), filter_(std::move(filter)), store_(nullptr), live_(true) {}

void Subscription::SetNotify(std::function<void()> notify) {
  absl::MutexLock lock(&mu_);
  notify_ = std::move(notify);
}

Subscription::Next Subscription::Poll() {
  if (ended_) return {Next::kEnd, {}, absl::OkStatus()};
  // Replay from the store first; the hub queues live events meanwhile.
  if (single_job() && last_sent_ < catch_up_until_) {
    {
      absl::MutexLock lock(&mu_);
      if (!closed_.ok()) return {Next::kEnd, {}, closed_};
    }
    if (replay_pos_ == replay_.size()) {
      auto events = store_->ReadCommittedEvents(job_id_, last_sent_, catch_up_until_,
                                                options_.catch_up_batch);
      if (!events.ok()) return {Next::kEnd, {}, events.status()};
      if (events->empty() || events->front()->event.sequence() != last_sent_ + 1) {
        // Only a removal can take stored events away from under a watcher.
        return {Next::kEnd, {}, absl::NotFoundError("job " + job_id_ + " was deleted")};
      }
      replay_ = *std::move(events);
      replay_pos_ = 0;
    }
    Next next{Next::kSend, std::move(replay_[replay_pos_++]), {}};
    if (replay_pos_ == replay_.size()) {
      replay_.clear();
      replay_.shrink_to_fit();
      replay_pos_ = 0;
    }
    last_sent_ = next.event->event.sequence();
    // An end that a retry (RetryJob) followed is not the stream's.
    ended_ = IsTerminal(next.event->event.type()) && last_sent_ >= catch_up_until_;
    return next;
  }
  if (!live_) return {Next::kEnd, {}, absl::OkStatus()};
  return PollLive();
}

Subscription::Next Subscription::PollLive() {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return {Next::kEnd, {}, closed_};
  while (queue_ && !queue_->empty()) {
    Next next{Next::kSend, std::move(queue_->front()), {}};
    queue_->pop_front();
    const uint64_t index = popped_++;
    const v1::JobEvent& event = next.event->event;
    if (event.type() == v1::JobEvent::PROGRESS) {
      auto it = tail_progress_.find(event.job_id());
      if (it != tail_progress_.end() && it->second == index) tail_progress_.erase(it);
    } else {
      --state_events_;
    }
    if (single_job()) {
      // Live events the replay already covered are skipped, so nothing repeats.
      if (event.sequence() <= last_sent_) continue;
      last_sent_ = event.sequence();
      ended_ = IsTerminal(event.type());
    }
    return next;
  }
  waiting_ = true;
  return {Next::kWait, {}, {}};
}

bool Subscription::Enqueue(const storage::CommittedEventPtr& committed, bool enforce_limit) {
  if (!queue_) queue_ = std::make_unique<std::deque<storage::CommittedEventPtr>>();
  const v1::JobEvent& event = committed->event;
  if (event.type() == v1::JobEvent::PROGRESS) {
    auto it = tail_progress_.find(event.job_id());
    if (it != tail_progress_.end() && queue_->size() >= options_.conflate_after) {
      (*queue_)[it->second - popped_] = committed;  // conflate: nobody saw the older one
      return false;  // the queue was not empty, so nobody is waiting
    }
    tail_progress_[event.job_id()] = popped_ + queue_->size();
  } else {
    if (enforce_limit && state_events_ >= options_.queue_limit) {
      closed_ = absl::ResourceExhaustedError(absl::StrCat(
          "watcher fell behind by more than ", options_.queue_limit,
          " events; resume after the last sequence received"));
      queue_.reset();
      tail_progress_.clear();
      state_events_ = 0;
      return Wake();
    }
    tail_progress_.erase(event.job_id());
    ++state_events_;
  }
  queue_->push_back(committed);
  return Wake();
}

bool Subscription::Push(const storage::CommittedEventPtr& event) {
  if (!single_job() && !filter_.Matches(event->event.status())) return false;
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return false;
  if (!snapshot_sequences_.empty()) {
    auto it = snapshot_sequences_.find(event->event.job_id());
    if (it != snapshot_sequences_.end()) {
      if (event->event.sequence() <= it->second) return false;  // the snapshot showed it
      snapshot_sequences_.erase(it);
    }
  }
  return Enqueue(event, /*enforce_limit=*/true);
}

bool Subscription::PushSnapshot(const storage::CommittedEventPtr& event) {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return false;
  snapshot_sequences_[event->event.job_id()] = event->event.sequence();
  return Enqueue(event, /*enforce_limit=*/false);
}

bool Subscription::Close(absl::Status why) {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return false;
  closed_ = std::move(why);
  return Wake();
}

bool Subscription::Wake() {
  if (!waiting_) return false;
  waiting_ = false;
  return true;
}

void Subscription::Notify() {
  std::function<void()> notify;
  {
    absl::MutexLock lock(&mu_);
    notify = notify_;
  }
  if (notify) notify();
}

}  // namespace jobstream::watch
