#include "server/storage/group_commit.h"

#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::storage {

GroupCommitter::GroupCommitter(JobStore* store, Publish publish, OnFailure on_failure,
                               size_t max_group)
    : store_(store),
      publish_(std::move(publish)),
      on_failure_(std::move(on_failure)),
      max_group_(max_group) {
  commit_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-commit");
    CommitLoop();
  });
  deliver_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-deliver");
    DeliverLoop();
  });
}

GroupCommitter::~GroupCommitter() { Stop(); }

absl::StatusOr<GroupCommitter::Handle> GroupCommitter::Enqueue(Write write) {
  auto handle = std::make_shared<Write>(std::move(write));
  absl::MutexLock lock(&mu_);
  if (!error_.ok()) return error_;
  if (stopping_) return absl::UnavailableError("server is shutting down");
  pending_.push_back(handle);
  return handle;
}

bool GroupCommitter::TryReplace(const Handle& handle, Batch batch,
                                std::vector<CommittedEventPtr> events,
                                std::function<void(absl::Status)> also_done) {
  absl::MutexLock lock(&mu_);
  if (handle->taken) return false;
  handle->batch = std::move(batch);
  handle->events = std::move(events);
  if (also_done) {
    if (handle->done) {
      handle->done = [first = std::move(handle->done),
                      then = std::move(also_done)](absl::Status s) {
        first(s);
        then(s);
      };
    } else {
      handle->done = std::move(also_done);
    }
  }
  return true;
}

void GroupCommitter::CommitLoop() {
  for (;;) {
    Group group;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](GroupCommitter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->pending_.empty() || self->stopping_;
          },
          this));
      if (pending_.empty()) {  // stopping and drained
        commit_done_ = true;
        return;
      }
      while (!pending_.empty() && group.writes.size() < max_group_) {
        pending_.front()->taken = true;
        group.writes.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
      ++undelivered_;
      group.status = error_;
    }
    if (group.status.ok()) {
      std::vector<const Batch*> batches;
      batches.reserve(group.writes.size());
      for (const Handle& w : group.writes) batches.push_back(&w->batch);
      const absl::Time start = absl::Now();
      group.status = store_->Write(batches, /*sync=*/true);
      server_metrics::ObserveCommit(batches.size(), absl::Now() - start);
    }
    absl::Status failed_now;
    {
      absl::MutexLock lock(&mu_);
      // The group's own writes fail with the store's error; every write after them, until
      // Resume, with this one. Set here, before any caller hears of the failure, so the
      // next write a caller tries is refused saying why, whatever on_failure_ has done yet.
      if (!group.status.ok() && error_.ok()) {
        failed_now = error_ = absl::UnavailableError(
            absl::StrCat("the store failed a write and takes none until it recovers (",
                         group.status.message(), ")"));
      }
      if (group.status.ok()) {
        ++groups_written_;
        writes_committed_ += group.writes.size();
      }
      committed_.push_back(std::move(group));
    }
    if (!failed_now.ok() && on_failure_) on_failure_(failed_now);
  }
}

void GroupCommitter::DeliverLoop() {
  for (;;) {
    Group group;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](GroupCommitter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->committed_.empty() || self->commit_done_;
          },
          this));
      if (committed_.empty()) return;  // the committer has finished and all is delivered
      group = std::move(committed_.front());
      committed_.pop_front();
    }
    for (const Handle& w : group.writes) {
      if (group.status.ok()) {
        for (const CommittedEventPtr& event : w->events) publish_(event);
      }
      if (w->done) w->done(group.status);
    }
    absl::MutexLock lock(&mu_);
    --undelivered_;
  }
}

void GroupCommitter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (commit_thread_.joinable()) commit_thread_.join();
  if (deliver_thread_.joinable()) deliver_thread_.join();
}

absl::Status GroupCommitter::health() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

void GroupCommitter::AwaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](GroupCommitter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
        return self->pending_.empty() && self->undelivered_ == 0;
      },
      this));
}

absl::Status GroupCommitter::Resume() {
  absl::MutexLock lock(&mu_);
  if (error_.ok()) return absl::OkStatus();
  if (!pending_.empty() || undelivered_ != 0) {
    return absl::FailedPreconditionError("writes queued before the failure are still in flight");
  }
  absl::Status resumed = store_->Resume();
  if (resumed.ok()) error_ = absl::OkStatus();
  return resumed;
}

uint64_t GroupCommitter::groups_written() const {
  absl::MutexLock lock(&mu_);
  return groups_written_;
}

uint64_t GroupCommitter::writes_committed() const {
  absl::MutexLock lock(&mu_);
  return writes_committed_;
}

}  // namespace jobstream::storage
