// PgJobManager's batches (batch.h decides how a parent moves). A SubmitBatch is one
// transaction (PgStore::InsertBatch). The leading server counts each ended job of a batch
// on its parent — at once, as the feed shows it the terminal event, many to a transaction
// — and, each second, any a crash or a change of leader left uncounted: counting removes
// the job's batch_children row in the same transaction, so each end is counted once.
#include "jobstream/v1/job_states.h"
#include "server/jobs/batch.h"
#include "server/jobs/graph.h"
#include "server/jobs/pg_manager.h"

namespace jobstream::jobs {

using storage::pg::PgStore;
using v1::Job;
using v1::JobEvent;

namespace {

// An event of a parent, carrying the parent as of it (the store numbers it).
JobEvent ParentEvent(JobEvent::Type type, absl::Time now, const Job& parent,
                     const v1::ChildEnded* child) {
  JobEvent event = EventOf(type, now);
  *event.mutable_status() = parent;
  if (child != nullptr) *event.mutable_child() = *child;
  return event;
}

}  // namespace

void PgJobManager::SubmitBatch(const v1::SubmitBatchRequest& request, const auth::Scope& scope,
                               BatchCallback done) {
  calls_->Post([this, request, scope, done = std::move(done)] {
    SubmitBatchNow(request, scope, done);
  });
}

void PgJobManager::SubmitBatchNow(const v1::SubmitBatchRequest& request,
                                  const auth::Scope& scope, BatchCallback done) {
  const absl::Time now = absl::Now();
  if (absl::Status s = ValidateSubmitBatch(request, *types_, options_.limits,
                                           options_.webhook_policy, now);
      !s.ok()) {
    return done(s);
  }
  auto queued = QueuedOf(scope.tenant);
  if (!queued.ok()) return done(queued.status());
  if (*queued + request.children_size() > options_.limits.max_queued_per_tenant) {
    return done(QueueFull(scope.tenant, *queued));
  }
  NewBatch made = MakeBatch(request, *types_, scope.tenant, now);
  std::vector<PgStore::NewJob> children;
  children.reserve(made.children.size());
  for (size_t i = 0; i < made.children.size(); ++i) {
    children.push_back({std::move(made.children[i]), request.children(i).params(),
                        EventOf(JobEvent::CREATED, now)});
  }
  std::vector<JobEvent> parent_events = {ParentEvent(JobEvent::CREATED, now, made.parent, nullptr),
                                         ParentEvent(JobEvent::WAITING, now, made.parent, nullptr)};
  auto inserted = store_->InsertBatch(made.parent, made.parent_params, std::move(parent_events),
                                      children);
  if (!inserted.ok()) return done(inserted.status());
  if (!inserted->created) return done(ReadBatch(inserted->job.id()));  // a retried call's
  {
    absl::MutexLock lock(&mu_);
    queued_[scope.tenant].count += static_cast<int64_t>(children.size());
  }
  JobEvent logged = ParentEvent(JobEvent::CREATED, now, inserted->job, nullptr);
  logged.set_job_id(inserted->job.id());
  RecordStateChange(logged);
  v1::SubmitBatchResponse response;
  *response.mutable_parent() = std::move(inserted->job);
  for (const PgStore::NewJob& child : children) response.add_child_ids(child.job.id());
  done(std::move(response));
}

absl::StatusOr<v1::SubmitBatchResponse> PgJobManager::ReadBatch(const std::string& parent_id) const {
  v1::SubmitBatchResponse response;
  auto parent = Get(parent_id, auth::Scope::Everything());
  if (!parent.ok()) return parent.status();
  parent->clear_params();
  *response.mutable_parent() = *std::move(parent);
  auto children = store_->BatchChildren(parent_id);
  if (!children.ok()) return children.status();
  for (std::string& id : *children) response.add_child_ids(std::move(id));
  return response;
}

void PgJobManager::CountChildren(std::vector<std::string>& ended) {
  const absl::Time now = absl::Now();
  auto written = store_->CountChildren(
      ended, [&](const Job& stored, const google::protobuf::Struct& params,
                 const std::vector<const Job*>& ends) -> absl::StatusOr<PgStore::ParentMove> {
        PgStore::ParentMove move;
        Job parent = stored;
        auto make_then = [&]() -> absl::StatusOr<Job> {
          auto then = MakeThenJob(parent, params, *types_, options_.limits, now);
          if (!then.ok()) return then.status();
          move.then =
              PgStore::NewJob{then->job, then->request.params(), EventOf(JobEvent::CREATED, now)};
          return then->job;
        };
        for (const Job* end : ends) {
          MoveParent(parent, *end, now, make_then,
                     [&](JobEvent::Type type, const v1::ChildEnded* child) {
                       move.events.push_back(ParentEvent(type, now, parent, child));
                     });
        }
        return move;
      });
  // A failure is made good by the sweep, within a second.
  if (written.ok()) {
    for (const JobEvent& e : *written) RecordStateChange(e);
  }
}

void PgJobManager::SweepChildren() {
  // Those the feed's counting has not reached in a second: a crash, a change of leader or
  // a server not yet leading left them (younger ones are on their way: counted here too,
  // each would cost a second transaction).
  auto ended = store_->EndedChildren(256, absl::Now() - absl::Seconds(1));
  if (ended.ok() && !ended->empty()) CountChildren(*ended);
}

absl::StatusOr<Job> PgJobManager::CancelBatch(const std::string& parent_id, absl::Time now) {
  std::vector<std::string> stopping;  // running children of this server's to stop now
  auto written = store_->CancelBatch(
      parent_id,
      [&](Job& job, std::vector<JobEvent>& events) {
        if (job.state() == Job::QUEUED) {
          CancelWithBatch(job, parent_id, now);
          events.push_back(EventOf(JobEvent::CANCELLED, now));
        } else if (job.state() == Job::RUNNING && !job.cancel_requested()) {
          // Whoever runs it stops, as for a cancel of it; it ends CANCELLED then.
          job.set_cancel_requested(true);
          *job.mutable_update_time() = v1::ToProto(now);
          stopping.push_back(job.id());
        }
        return absl::OkStatus();
      },
      [&](const Job& stored, const google::protobuf::Struct&,
          const std::vector<const Job*>& ends) -> absl::StatusOr<PgStore::ParentMove> {
        PgStore::ParentMove move;
        Job parent = stored;
        if (parent.state() != Job::WAITING) return move;  // ended meanwhile: as it stands
        // Counted as they were cancelled; then the parent ends rather than going on.
        parent.set_cancel_requested(true);
        auto no_then = []() -> absl::StatusOr<Job> {
          return absl::InternalError("no then job after a cancel");
        };
        for (const Job* end : ends) {
          MoveParent(parent, *end, now, no_then,
                     [&](JobEvent::Type type, const v1::ChildEnded* child) {
                       move.events.push_back(ParentEvent(type, now, parent, child));
                     });
        }
        CancelWaiting(parent, now);
        move.events.push_back(ParentEvent(JobEvent::CANCELLED, now, parent, nullptr));
        return move;
      });
  if (!written.ok()) return written.status();
  for (const JobEvent& e : *written) RecordStateChange(e);
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& id : stopping) {
      auto it = runs_.find(id);
      if (it != runs_.end() && !it->second.control->stop.HasBeenNotified()) {
        it->second.control->stop.Notify();
      }
    }
  }
  return Get(parent_id, auth::Scope::Everything());  // as written, the parent's events last
}

}  // namespace jobstream::jobs
