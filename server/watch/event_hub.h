// EventHub: fans committed events out to watchers. Publish() is called in commit order
// (by the group committer's delivery thread) and only pushes into bounded per-watcher
// queues, so no watcher ever slows a job, the store or another watcher.
//
// The hub tracks every RUNNING job, and every job someone watches: its last published
// sequence and status. (A QUEUED job nobody watches is not held: a deep queue costs the hub
// nothing.) A new single-job watcher registers under the same lock that Publish takes,
// replays stored events up to the last sequence published (or, for a job the hub does not
// hold, stored), then receives what is published after it, skipping what it replayed: no
// gap, no duplicate. A finished job is replayed from the store and the stream ends.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/storage/event_reader.h"
#include "server/util/task_pool.h"
#include "server/watch/subscription.h"
#include "server/watch/watch_options.h"

namespace jobstream::watch {

class EventHub {
 public:
  EventHub(const storage::EventReader* store, WatchOptions options);

  // Watches one job after `after`. NotFound (saying "deleted/expired at …" for a removed
  // job), OutOfRange past its last sequence, ResourceExhausted over max_watchers,
  // Unavailable once closed. Every success must be paired with Unsubscribe.
  // Another tenant's job (beyond `scope`) is NotFound as if it never existed.
  absl::StatusOr<std::shared_ptr<Subscription>> WatchJob(const std::string& job_id,
                                                         int64_t after, const auth::Scope& scope);
  // Watches every job matching `filter`: a SNAPSHOT per matching RUNNING job and per
  // matching QUEUED job (the newest snapshot_queued_limit, read from the by_state index),
  // then events.
  absl::StatusOr<std::shared_ptr<Subscription>> WatchJobs(JobFilter filter);
  void Unsubscribe(const std::shared_ptr<Subscription>& sub);

  // A committed event; its status is the job after it, without params.
  void Publish(const storage::CommittedEventPtr& event);
  // Recovery: a RUNNING job whose events are all stored and count as published.
  void Track(const v1::Job& status);

  // Ends every subscription with `why` and refuses new ones.
  void Close(absl::Status why);
  // Ends every subscription with `why` (each watcher resumes from its last sequence) and
  // forgets every job, for a publisher that may have missed events; then Track again.
  void Reset(absl::Status why);

  size_t watchers() const { return watchers_.load(std::memory_order_relaxed); }

 private:
  using SubSet = absl::flat_hash_map<const Subscription*, std::shared_ptr<Subscription>>;
  struct Entry {
    // The newest sequence known: published, or read from the store by a watcher (0: none
    // yet; with `latest` null, nothing published yet).
    int64_t last_sequence = 0;
    storage::CommittedEventPtr latest;  // its status is the job as last published
    SubSet subs;
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Entry> jobs ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kShards = 16;
  Shard& ShardFor(const std::string& job_id);
  absl::Status Admit();
  void EndAll(absl::Status why, bool forget);

  const storage::EventReader* const store_;
  const WatchOptions options_;
  std::array<Shard, kShards> shards_;
  // Lock order: a shard's mu, then all_mu_. WatchJobs takes every shard in index order.
  absl::Mutex all_mu_;
  SubSet all_subs_ ABSL_GUARDED_BY(all_mu_);
  std::atomic<bool> closed_{false};
  std::atomic<size_t> watchers_{0};
  // Wakes idle watchers, so Publish never does a watcher's network write itself. Last:
  // its threads stop before the rest goes away.
  util::TaskPool fanout_;
};

// The NotFound status for a job id with no record: mentions a tombstone if there is one
// the caller may see.
absl::Status JobNotFound(const storage::EventReader& store, const std::string& job_id,
                         const auth::Scope& scope);
// The NotFound status of a job that does not exist, or that the caller may not see.
absl::Status NoSuchJob(const std::string& job_id);

}  // namespace jobstream::watch
