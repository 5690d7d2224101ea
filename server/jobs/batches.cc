// JobManager, part six: batches on RocksDB. batch.h decides how a parent moves; this
// writes a batch's jobs in one write, and each child's end together with its parent's
// CHILD event (and what follows it: the `then` job, or the parent's end), so a crash can
// never leave a child's end uncounted or counted twice.
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/jobs/batch.h"
#include "server/jobs/graph.h"
#include "server/jobs/ids.h"
#include "server/jobs/job_manager.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

using storage::Batch;
using storage::Cf;
using v1::Job;
using v1::JobEvent;

namespace {

std::vector<std::string> SplitIds(const std::string& packed) {
  std::vector<std::string> ids;
  ids.reserve(packed.size() / kJobIdLength);
  for (size_t at = 0; at + kJobIdLength <= packed.size(); at += kJobIdLength) {
    ids.push_back(packed.substr(at, kJobIdLength));
  }
  return ids;
}

}  // namespace

absl::StatusOr<v1::SubmitBatchResponse> JobManager::ReadBatch(const std::string& parent_id) const {
  v1::SubmitBatchResponse response;
  auto parent = store_->GetJob(parent_id);
  if (!parent.ok()) return parent.status();
  *response.mutable_parent() = *std::move(parent);
  auto children = store_->GetRequest(storage::BatchChildrenKey(parent_id));
  if (!children.ok()) return children.status();
  if (children->has_value()) {
    for (std::string& id : SplitIds(**children)) response.add_child_ids(std::move(id));
  }
  return response;
}

void JobManager::SubmitBatch(const v1::SubmitBatchRequest& request, const auth::Scope& scope,
                             BatchCallback done) {
  const absl::Time now = absl::Now();
  if (absl::Status s = ValidateSubmitBatch(request, *types_, options_.limits,
                                           options_.webhook_policy, now);
      !s.ok()) {
    return done(s);
  }
  if (options_.disk != nullptr) {
    if (absl::Status s = options_.disk->Admit(request.ByteSizeLong()); !s.ok()) return done(s);
  }
  const std::string request_key =
      request.request_id().empty() ? ""
                                   : storage::BatchRequestKey(scope.tenant, request.request_id());
  // The batch a retry of this call made, if any.
  auto existing = [&]() -> std::optional<absl::StatusOr<v1::SubmitBatchResponse>> {
    if (request_key.empty()) return std::nullopt;
    auto id = store_->GetRequest(request_key);
    if (!id.ok()) return id.status();
    if (!id->has_value()) return std::nullopt;
    return ReadBatch(**id);
  };
  if (auto answer = existing()) return done(*std::move(answer));

  NewBatch made = MakeBatch(request, *types_, scope.tenant, now);
  const std::string parent_id = made.parent.id();
  Batch batch;
  std::string child_ids;
  child_ids.reserve(made.children.size() * kJobIdLength);
  for (const Job& child : made.children) child_ids += child.id();
  batch.Put(Cf::kRequests, storage::BatchChildrenKey(parent_id), child_ids);
  if (!request_key.empty()) batch.Put(Cf::kRequests, request_key, parent_id);
  if (!made.parent_params.fields().empty()) {
    batch.Put(Cf::kParams, parent_id, made.parent_params.SerializeAsString());
  }
  batch.Put(Cf::kByTime, storage::ByTimeKey(absl::ToUnixMillis(now), parent_id), "");

  // Answered once all of it is durable, with the parent as its WAITING event leaves it;
  // so is every twin (the same request_id) that came meanwhile.
  auto answer = std::make_shared<v1::SubmitBatchResponse>();
  for (const Job& child : made.children) answer->add_child_ids(child.id());
  auto first = std::make_shared<BatchCallback>(std::move(done));
  auto finish = [this, request_key, first](absl::StatusOr<v1::SubmitBatchResponse> response) {
    std::vector<BatchCallback> waiters;
    if (request_key.empty()) {
      waiters.push_back(*first);
    } else {
      absl::MutexLock lock(&mu_);
      waiters = std::move(batches_in_flight_[request_key]);
      batches_in_flight_.erase(request_key);
    }
    for (auto& waiter : waiters) waiter(response);
  };

  std::function<void()> reply;  // run after the lock when the call ends here
  {
    absl::MutexLock lock(&mu_);
    if (!request_key.empty()) {
      auto in_flight = batches_in_flight_.find(request_key);
      if (in_flight != batches_in_flight_.end()) {
        in_flight->second.push_back(*first);  // answered when the first commits
        return;
      }
      // A twin may have committed between the check above and this lock.
      if (auto twin = existing()) reply = [first, twin = *std::move(twin)] { (*first)(twin); };
    }
    if (const int64_t queued = queue_.queued_of_tenant(scope.tenant);
        !reply && queued + static_cast<int64_t>(made.children.size()) >
                      options_.limits.max_queued_per_tenant) {
      reply = [first, full = QueueFull(scope.tenant, queued)] { (*first)(full); };
    }
    if (!reply) {
      if (!request_key.empty()) batches_in_flight_[request_key].push_back(*first);
      Staged staged;
      LiveJob& parent = live_[parent_id];
      parent.job = made.parent;
      Stage(parent, JobEvent::CREATED, batch, staged, nullptr);
      for (size_t i = 0; i < made.children.size(); ++i) {
        Job& child = made.children[i];
        if (!request.children(i).params().fields().empty()) {
          batch.Put(Cf::kParams, child.id(), request.children(i).params().SerializeAsString());
        }
        batch.Put(Cf::kByTime, storage::ByTimeKey(absl::ToUnixMillis(now), child.id()), "");
        LiveJob& live = live_[child.id()];
        live.job = std::move(child);
        // Held until it starts: a runner may take it before the write is durable.
        live.params =
            std::make_shared<const google::protobuf::Struct>(request.children(i).params());
        SetQueueKey(live, batch);
        Stage(live, JobEvent::CREATED, batch, staged, nullptr);
        staged.after_enqueue.push_back([this, &live] { Enqueue(live); });
      }
      Stage(parent, JobEvent::WAITING, batch, staged,
            [answer, finish](absl::StatusOr<Job> job) {
              if (!job.ok()) return finish(job.status());
              *answer->mutable_parent() = *std::move(job);
              finish(*answer);
            });
      auto handle = EnqueueStaged(std::move(batch), std::move(staged));
      if (!handle.ok()) {  // nothing was queued: undo the in-memory changes
        live_.erase(parent_id);
        for (const std::string& id : answer->child_ids()) live_.erase(id);
        // After the lock: finish takes it.
        reply = [finish, error = handle.status()] { finish(error); };
      }
    }
  }
  if (reply) reply();
}

void JobManager::StageParent(const Job& ended, Batch& batch, Staged& staged) {
  const std::string parent_id = ended.parent_id();
  const bool held = live_.contains(parent_id);
  auto loaded = Load(parent_id, /*with_params=*/false);
  if (!loaded.ok()) return;  // removed: only an ended parent is
  LiveJob& parent = **loaded;
  const absl::Time now = absl::Now();
  // The `then` job: staged in this write, joining the queue once it is queued.
  auto make_then = [&]() -> absl::StatusOr<Job> {
    auto with_params = Load(parent_id, /*with_params=*/true);
    if (!with_params.ok()) return with_params.status();
    const google::protobuf::Struct none;
    auto then = MakeThenJob(parent.job, parent.params ? *parent.params : none, *types_,
                            options_.limits, now);
    if (!then.ok()) return then.status();
    const std::string then_id = then->job.id();
    if (!then->request.params().fields().empty()) {
      batch.Put(Cf::kParams, then_id, then->request.params().SerializeAsString());
    }
    batch.Put(Cf::kByTime, storage::ByTimeKey(absl::ToUnixMillis(now), then_id), "");
    LiveJob& live = live_[then_id];
    live.job = then->job;
    live.params = std::make_shared<const google::protobuf::Struct>(then->request.params());
    SetQueueKey(live, batch);
    Stage(live, JobEvent::CREATED, batch, staged, nullptr);
    staged.after_enqueue.push_back([this, &live] { Enqueue(live); });
    return then->job;
  };
  const bool ended_parent = MoveParent(
      parent.job, ended, now, make_then, [&](JobEvent::Type type, const v1::ChildEnded* child) {
        Stage(parent, type, batch, staged, nullptr, nullptr, child);
      });
  // An ended parent stays in memory until its end is written (Settle): a child ending
  // meanwhile finds it ended.
  if (!ended_parent && !held && parent.job.state() != Job::WAITING) {
    live_.erase(parent_id);  // read in only to look: it had ended
  }
}

absl::Status JobManager::CancelBatch(LiveJob& parent, JobCallback done) {
  const absl::Time now = absl::Now();
  const std::string parent_id = parent.job.id();
  auto children = store_->GetRequest(storage::BatchChildrenKey(parent_id));
  if (!children.ok()) return children.status();
  // Children cancelled here are still counted (a CHILD event each); the parent then ends
  // CANCELLED rather than going on to its `then` job, which is cancelled after it.
  parent.job.set_cancel_requested(true);
  Batch batch;
  Staged staged;
  auto cancel = [&](const std::string& id) {
    const bool held = live_.contains(id);
    auto loaded = Load(id, /*with_params=*/false);
    if (!loaded.ok()) return;  // removed: it had ended
    LiveJob& live = **loaded;
    if (live.job.state() == Job::QUEUED) {
      Unqueue(live, batch);
      CancelWithBatch(live.job, parent_id, now);
      Stage(live, JobEvent::CANCELLED, batch, staged, nullptr);
    } else if (live.job.state() == Job::RUNNING) {
      // Whoever runs it is asked to stop, as Cancel does; it ends when it does.
      live.job.set_cancel_requested(true);
      if (live.control && !live.control->stop.HasBeenNotified()) live.control->stop.Notify();
      *live.job.mutable_update_time() = v1::ToProto(now);
      batch.Put(Cf::kJobs, id, live.job.SerializeAsString());
      live.pending_progress.reset();
    } else if (!held) {
      live_.erase(id);  // read in only to look
    }
  };
  if (children->has_value()) {
    for (const std::string& id : SplitIds(**children)) cancel(id);
  }
  const std::string then_id = parent.job.batch().then_job_id();
  CancelWaiting(parent.job, now);
  Stage(parent, JobEvent::CANCELLED, batch, staged, std::move(done));
  if (!then_id.empty()) cancel(then_id);
  return EnqueueStaged(std::move(batch), std::move(staged)).status();
}

}  // namespace jobstream::jobs
