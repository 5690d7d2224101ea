// GroupCommitter: funnels every state transition through one committer thread that
// writes all pending batches as one synced WriteBatch (one fsync for many writes), then
// hands the committed writes, in commit order, to a delivery thread that publishes their
// events and runs their completions. Replies never run on the committer thread.
//
// A failed write is sticky (as in LevelDB): every later write fails with the same status,
// so nothing is acknowledged on top of state the store does not have. Whoever queued
// writes may hold state that ran ahead of the store; once it has let everything queued
// fail (AwaitIdle), Resume asks the store to take writes again, and it reloads that state
// before queueing more.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/storage/committed_event.h"
#include "server/storage/job_store.h"

namespace jobstream::storage {

class GroupCommitter {
 public:
  struct Write {
    Batch batch;
    std::vector<CommittedEventPtr> events;  // published only after the batch is durable
    std::function<void(absl::Status)> done;  // on the delivery thread, after publishing
    bool taken = false;  // set (under the committer's lock) once it is being written
  };
  using Handle = std::shared_ptr<Write>;
  // Called on the delivery thread for each committed event, in commit order.
  using Publish = std::function<void(const CommittedEventPtr&)>;
  // Called on the committer thread, without its lock, when a write fails and the error
  // becomes sticky, with that sticky error ("the store failed a write ... (why)"): what
  // Enqueue and health() say from then on.
  using OnFailure = std::function<void(const absl::Status&)>;

  GroupCommitter(JobStore* store, Publish publish, OnFailure on_failure = nullptr,
                 size_t max_group = 1024);
  ~GroupCommitter();  // Stop()

  // Queues a write. Fails (and drops the write, without calling done) once stopped or
  // after a store failure.
  absl::StatusOr<Handle> Enqueue(Write write) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `done` once everything queued before it is durable (or with the store's error).
  // Fails, without calling done, as Enqueue does.
  absl::Status Barrier(std::function<void(absl::Status)> done) ABSL_LOCKS_EXCLUDED(mu_) {
    return Enqueue({{}, {}, std::move(done)}).status();
  }

  // Replaces the batch and events of a write the committer has not taken yet, keeping
  // its place in the order; false if it is already being written. `also_done` (if any)
  // runs after the write's own done.
  bool TryReplace(const Handle& handle, Batch batch, std::vector<CommittedEventPtr> events,
                  std::function<void(absl::Status)> also_done = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Commits and delivers everything queued, then stops both threads. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // OK, or the sticky store error.
  absl::Status health() const ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until everything queued has been written (or has failed) and delivered. Only
  // meaningful after a failure, when nothing new can be queued.
  void AwaitIdle() ABSL_LOCKS_EXCLUDED(mu_);
  // After a failure, once idle: asks the store to take writes again (JobStore::Resume)
  // and, if it does, clears the sticky error. OK if there was no failure;
  // FAILED_PRECONDITION if writes are still in flight.
  absl::Status Resume() ABSL_LOCKS_EXCLUDED(mu_);

  // Counters for metrics and benchmarks.
  uint64_t groups_written() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t writes_committed() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Group {
    std::vector<Handle> writes;
    absl::Status status;
  };
  void CommitLoop();
  void DeliverLoop();

  JobStore* const store_;
  const Publish publish_;
  const OnFailure on_failure_;
  const size_t max_group_;

  mutable absl::Mutex mu_;
  std::deque<Handle> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<Group> committed_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  size_t undelivered_ ABSL_GUARDED_BY(mu_) = 0;  // groups taken, not yet delivered
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool commit_done_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t groups_written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t writes_committed_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread commit_thread_;
  std::thread deliver_thread_;
};

}  // namespace jobstream::storage
