#include "server/watch/event_hub.h"

#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"

namespace jobstream::watch {

using google::protobuf::util::TimeUtil;

absl::Status NoSuchJob(const std::string& job_id) {
  return absl::NotFoundError("no job with id " + job_id);
}

absl::Status JobNotFound(const storage::EventReader& store, const std::string& job_id,
                         const auth::Scope& scope) {
  auto tombstone = store.GetTombstone(job_id);
  if (!tombstone.ok()) return tombstone.status();
  // Another tenant's removed job never existed for this caller.
  if (!tombstone->has_value() || !scope.Sees((*tombstone)->tenant)) return NoSuchJob(job_id);
  const storage::Tombstone& t = **tombstone;
  return absl::NotFoundError(absl::StrCat(
      "job ", job_id, " was ", t.reason, " at ",
      absl::FormatTime(absl::RFC3339_sec, absl::FromUnixMillis(t.removed_ms),
                       absl::UTCTimeZone())));
}

EventHub::EventHub(const storage::EventReader* store, WatchOptions options)
    : store_(store), options_(options), fanout_("js-fanout", options.fanout_threads) {}

EventHub::Shard& EventHub::ShardFor(const std::string& job_id) {
  return shards_[absl::HashOf(job_id) % kShards];
}

absl::Status EventHub::Admit() {
  if (closed_.load()) return absl::UnavailableError("server is shutting down");
  if (watchers_.fetch_add(1) >= options_.max_watchers) {
    watchers_.fetch_sub(1);
    return absl::ResourceExhaustedError(
        absl::StrCat("the server already has ", options_.max_watchers,
                     " watchers, the limit (--max_watchers)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Subscription>> EventHub::WatchJob(const std::string& job_id,
                                                                 int64_t after,
                                                                 const auth::Scope& scope) {
  if (absl::Status s = Admit(); !s.ok()) return s;
  auto refuse = [this](absl::Status s) {
    watchers_.fetch_sub(1);
    return s;
  };
  auto too_many = [&]() {
    return refuse(absl::ResourceExhaustedError(absl::StrCat(
        "job ", job_id, " already has ", options_.max_watchers_per_job,
        " watchers, the limit (--max_watchers_per_job)")));
  };
  auto out_of_range = [&](int64_t last) {
    return refuse(absl::OutOfRangeError(absl::StrCat(
        "after_sequence ", after, " is beyond job ", job_id, "'s last sequence ", last)));
  };
  Shard& shard = ShardFor(job_id);
  absl::MutexLock lock(&shard.mu);
  if (closed_.load()) return refuse(absl::UnavailableError("server is shutting down"));
  auto it = shard.jobs.find(job_id);
  // Held, and the position is within what the hub has: served from the entry. A position
  // beyond it may still be in the store (another server's events on a feed that lags this
  // one; a watch resumed here after that server died): the store decides, below.
  if (it != shard.jobs.end() && it->second.last_sequence > 0 && it->second.latest &&
      after <= it->second.last_sequence) {
    if (!scope.Sees(it->second.latest->event.status())) return refuse(NoSuchJob(job_id));
    if (it->second.subs.size() >= options_.max_watchers_per_job) return too_many();
    auto sub = std::make_shared<Subscription>(store_, job_id, after, it->second.last_sequence,
                                              /*live=*/true, options_);
    it->second.subs.emplace(sub.get(), sub);
    return sub;
  }
  // Not published yet, or finished. The store is read under the shard lock so a job
  // cannot finish (and leave the hub) between this read and the decision below.
  auto job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) return refuse(JobNotFound(*store_, job_id, scope));
  if (!job.ok()) return refuse(job.status());
  if (!scope.Sees(*job)) return refuse(NoSuchJob(job_id));
  if (after > job->last_sequence()) return out_of_range(job->last_sequence());
  if (v1::IsFinished(job->state())) {
    return std::make_shared<Subscription>(store_, job_id, after, job->last_sequence(),
                                          /*live=*/false, options_);
  }
  // Live but not held (a queued job nobody watched), or committed but not yet published:
  // replay what is stored; what is published later comes live, less what was replayed.
  Entry& entry = shard.jobs[job_id];
  if (entry.subs.size() >= options_.max_watchers_per_job) return too_many();
  // What the store holds: a lagging feed's older events are known as such.
  entry.last_sequence = std::max(entry.last_sequence, job->last_sequence());
  auto sub = std::make_shared<Subscription>(store_, job_id, after, job->last_sequence(),
                                            /*live=*/true, options_);
  entry.subs.emplace(sub.get(), sub);
  return sub;
}

absl::StatusOr<std::shared_ptr<Subscription>> EventHub::WatchJobs(JobFilter filter) {
  if (absl::Status s = Admit(); !s.ok()) return s;
  auto sub = std::make_shared<Subscription>(std::move(filter), options_);
  const google::protobuf::Timestamp now = TimeUtil::GetCurrentTime();
  // Every shard is held while the snapshot is taken and the subscription registered, so
  // each job's events are either in the snapshot or delivered live, never both.
  for (Shard& shard : shards_) shard.mu.Lock();
  {
    absl::MutexLock lock(&all_mu_);
    if (closed_.load()) {
      for (Shard& shard : shards_) shard.mu.Unlock();
      watchers_.fetch_sub(1);
      return absl::UnavailableError("server is shutting down");
    }
    auto push = [&](const v1::Job& status) {
      v1::JobEvent snapshot;
      snapshot.set_job_id(status.id());
      snapshot.set_sequence(status.last_sequence());
      *snapshot.mutable_time() = now;
      snapshot.set_type(v1::JobEvent::SNAPSHOT);
      *snapshot.mutable_status() = status;
      snapshot.mutable_status()->clear_params();
      sub->PushSnapshot(storage::MakeCommittedEvent(std::move(snapshot)));
    };
    for (Shard& shard : shards_) {
      for (const auto& [id, entry] : shard.jobs) {
        if (!entry.latest || entry.latest->event.status().state() != v1::Job::RUNNING ||
            !sub->filter().Matches(entry.latest->event.status())) {
          continue;
        }
        push(entry.latest->event.status());
      }
    }
    // Queued jobs from the store (the newest first), read under every shard's lock: one
    // whose next event is committed but not yet published is in the snapshot, and the
    // subscription drops that event when it comes live.
    if (sub->filter().states.empty() || sub->filter().states.contains(v1::Job::QUEUED)) {
      size_t sent = 0;
      (void)store_->VisitQueuedNewestFirst(
          10 * options_.snapshot_queued_limit, [&](const v1::Job& job) {
            if (sent == options_.snapshot_queued_limit) return false;
            if (sub->filter().Matches(job)) {
              push(job);
              ++sent;
            }
            return true;
          });
    }
    all_subs_.emplace(sub.get(), sub);
  }
  for (Shard& shard : shards_) shard.mu.Unlock();
  return sub;
}

void EventHub::Unsubscribe(const std::shared_ptr<Subscription>& sub) {
  watchers_.fetch_sub(1);
  if (!sub->single_job()) {
    absl::MutexLock lock(&all_mu_);
    all_subs_.erase(sub.get());
    return;
  }
  Shard& shard = ShardFor(sub->job_id());
  absl::MutexLock lock(&shard.mu);
  auto it = shard.jobs.find(sub->job_id());
  if (it == shard.jobs.end()) return;
  Entry& entry = it->second;
  entry.subs.erase(sub.get());
  // The last watcher of a job that is not RUNNING: the hub need not hold it any more.
  if (entry.subs.empty() &&
      (!entry.latest || entry.latest->event.status().state() != v1::Job::RUNNING)) {
    shard.jobs.erase(it);
  }
}

void EventHub::Publish(const storage::CommittedEventPtr& committed) {
  std::vector<std::shared_ptr<Subscription>> wake;
  const v1::JobEvent& event = committed->event;
  Shard& shard = ShardFor(event.job_id());
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.jobs.find(event.job_id());
    // A job is held while it runs or is watched; a queued one nobody watches is not.
    if (it == shard.jobs.end() && event.status().state() == v1::Job::RUNNING) {
      it = shard.jobs.try_emplace(event.job_id()).first;
    }
    // An event older than the job's newest known (a feed that lags behind a watcher's
    // read of the store) reaches the watchers, who skip what they have, and moves nothing:
    // a retry's watchers must not be dropped by the end it followed.
    bool stale = false;
    if (it != shard.jobs.end()) {
      Entry& entry = it->second;
      // (The event at the sequence a watcher read from the store is the one it stood for.)
      stale = event.sequence() < entry.last_sequence ||
              (event.sequence() == entry.last_sequence && entry.latest);
      if (!stale) {
        entry.last_sequence = event.sequence();
        entry.latest = committed;
      }
      for (const auto& [ptr, sub] : entry.subs) {
        if (sub->Push(committed)) wake.push_back(sub);
      }
      if (!stale && entry.subs.empty() && event.status().state() != v1::Job::RUNNING) {
        shard.jobs.erase(it);
      }
    }
    {
      absl::MutexLock all_lock(&all_mu_);
      for (const auto& [ptr, sub] : all_subs_) {
        if (sub->Push(committed)) wake.push_back(sub);
      }
    }
    // A finished job leaves the hub; its watchers still drain their queues.
    if (IsTerminal(event.type()) && !stale) shard.jobs.erase(event.job_id());
  }
  // In chunks: enough to amortize the hand-off, small enough to use every pool thread.
  constexpr size_t kChunk = 64;
  for (size_t i = 0; i < wake.size(); i += kChunk) {
    std::vector<std::shared_ptr<Subscription>> chunk(
        std::make_move_iterator(wake.begin() + i),
        std::make_move_iterator(wake.begin() + std::min(wake.size(), i + kChunk)));
    fanout_.Post([chunk = std::move(chunk)] {
      for (const auto& sub : chunk) sub->Notify();
    });
  }
}

void EventHub::Track(const v1::Job& status) {
  Shard& shard = ShardFor(status.id());
  absl::MutexLock lock(&shard.mu);
  Entry& entry = shard.jobs[status.id()];
  entry.last_sequence = status.last_sequence();
  v1::JobEvent latest;  // stands for the job's last stored event
  latest.set_job_id(status.id());
  latest.set_sequence(status.last_sequence());
  *latest.mutable_status() = status;
  latest.mutable_status()->clear_params();
  entry.latest = storage::MakeCommittedEvent(std::move(latest));
}

void EventHub::Close(absl::Status why) {
  closed_.store(true);
  EndAll(why, /*forget=*/false);
}

void EventHub::Reset(absl::Status why) { EndAll(why, /*forget=*/true); }

void EventHub::EndAll(absl::Status why, bool forget) {
  std::vector<std::shared_ptr<Subscription>> wake;
  for (Shard& shard : shards_) shard.mu.Lock();
  {
    absl::MutexLock lock(&all_mu_);
    for (Shard& shard : shards_) {
      for (const auto& [id, entry] : shard.jobs) {
        for (const auto& [ptr, sub] : entry.subs) {
          if (sub->Close(why)) wake.push_back(sub);
        }
      }
    }
    for (const auto& [ptr, sub] : all_subs_) {
      if (sub->Close(why)) wake.push_back(sub);
    }
    if (forget) {
      for (Shard& shard : shards_) shard.jobs.clear();
      all_subs_.clear();
    }
  }
  for (Shard& shard : shards_) shard.mu.Unlock();
  for (const auto& sub : wake) sub->Notify();
}

}  // namespace jobstream::watch
