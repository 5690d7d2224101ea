// Subscription: one watcher's view of the event stream. The hub pushes committed events
// into it (never blocking); the watcher polls it. A single-job subscription first replays
// stored events (after, catch_up_until] from the store, then the live events the hub
// pushed meanwhile, so the hand-over neither drops nor duplicates an event.
//
// Thread-safety: Push/Close from any thread; Poll from one consumer at a time.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/auth/scope.h"
#include "server/storage/committed_event.h"
#include "server/storage/event_reader.h"
#include "server/watch/watch_options.h"

namespace jobstream::watch {

// Which jobs a many-job subscription wants. Empty sets match everything.
struct JobFilter {
  auth::Scope scope;  // whose jobs
  absl::flat_hash_set<std::string> types;
  absl::flat_hash_map<std::string, std::string> labels;
  absl::flat_hash_set<int> states;
  bool Matches(const v1::Job& status) const;
};

using v1::IsTerminal;

class Subscription {
 public:
  struct Next {
    enum Kind { kSend, kWait, kEnd } kind;
    storage::CommittedEventPtr event;  // kSend
    absl::Status status;  // kEnd: OK after the terminal event, else why it was cut off
  };

  // One job: replay (after, catch_up_until] from `store`, then live events unless `live`
  // is false (a finished job: the replay ends the stream).
  Subscription(const storage::EventReader* store, std::string job_id, int64_t after,
               int64_t catch_up_until, bool live, const WatchOptions& options);
  // Many jobs: live events matching `filter`.
  Subscription(JobFilter filter, const WatchOptions& options);

  // Consumer side. kWait means nothing to send now: `notify` runs once there is.
  Next Poll() ABSL_LOCKS_EXCLUDED(mu_);
  void SetNotify(std::function<void()> notify) ABSL_LOCKS_EXCLUDED(mu_);

  // Hub side. Each returns true when the consumer is waiting and must be notified
  // (call Notify() after releasing the hub's locks).
  bool Push(const storage::CommittedEventPtr& event) ABSL_LOCKS_EXCLUDED(mu_);
  // A WatchJobs snapshot: queued whatever the limit.
  bool PushSnapshot(const storage::CommittedEventPtr& event) ABSL_LOCKS_EXCLUDED(mu_);
  bool Close(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);  // why is not OK
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);

  bool single_job() const { return !job_id_.empty(); }
  const std::string& job_id() const { return job_id_; }
  const JobFilter& filter() const { return filter_; }

 private:
  Next PollLive() ABSL_LOCKS_EXCLUDED(mu_);
  bool Enqueue(const storage::CommittedEventPtr& event, bool enforce_limit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Wake() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WatchOptions options_;
  const JobFilter filter_;
  const std::string job_id_;  // empty for a many-job subscription
  const storage::EventReader* const store_;
  const bool live_;

  // Consumer-only state (Poll is never concurrent with itself).
  int64_t last_sent_ = 0;
  int64_t catch_up_until_ = 0;
  std::vector<storage::CommittedEventPtr> replay_;  // one batch read from the store
  size_t replay_pos_ = 0;
  bool ended_ = false;  // the terminal event was sent

  absl::Mutex mu_;
  // Allocated on first use: most watchers sit idle, and an empty std::deque is not free.
  std::unique_ptr<std::deque<storage::CommittedEventPtr>> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t popped_ ABSL_GUARDED_BY(mu_) = 0;  // queue_[i] has absolute index popped_ + i
  // Jobs whose newest queued event is an unsent PROGRESS, with its absolute index: a
  // newer PROGRESS of the job replaces it in place (conflation).
  absl::flat_hash_map<std::string, uint64_t> tail_progress_ ABSL_GUARDED_BY(mu_);
  size_t state_events_ ABSL_GUARDED_BY(mu_) = 0;  // queued events other than PROGRESS
  absl::Status closed_ ABSL_GUARDED_BY(mu_);
  // Many jobs: the sequence each job's snapshot showed, until a later event of it comes.
  // A live event the snapshot already covered (committed before it was read, published
  // after — a PostgreSQL feed's notification in flight) is dropped, so none comes twice.
  absl::flat_hash_map<std::string, int64_t> snapshot_sequences_ ABSL_GUARDED_BY(mu_);
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jobstream::watch
