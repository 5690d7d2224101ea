// JobManager, part five: job graphs on RocksDB. graph.h decides how a WAITING job moves;
// this keeps, in memory, which WAITING jobs wait for each live job (rebuilt from the
// store at start), and writes their moves once the job they wait for has ended durably.
#include <algorithm>
#include <optional>

#include "absl/strings/match.h"

#include "server/jobs/graph.h"
#include "server/jobs/job_manager.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

using storage::Batch;
using storage::Cf;
using v1::Job;
using v1::JobEvent;

absl::StatusOr<std::vector<Job>> JobManager::ReadDependencies(const v1::SubmitRequest& request,
                                                             const auth::Scope& scope) {
  std::vector<Job> found;
  found.reserve(request.depends_on_size());
  for (int i = 0; i < request.depends_on_size(); ++i) {
    const std::string& id = request.depends_on(i);
    // The working copy: a dependency may have ended in memory with its write on its way,
    // in which case this job's writes follow that write.
    if (auto it = live_.find(id); it != live_.end()) {
      if (!scope.Sees(it->second.job)) return DependencyNotFound(i, id);
      found.push_back(it->second.job);
      continue;
    }
    auto job = store_->GetJob(id);
    if (absl::IsNotFound(job.status()) || (job.ok() && !scope.Sees(*job))) {
      return DependencyNotFound(i, id);
    }
    if (!job.ok()) return job.status();
    found.push_back(*std::move(job));
  }
  return found;
}

void JobManager::Await(const Job& job) {
  for (const std::string& id : job.waiting_for()) dependents_[id].push_back(job.id());
}

void JobManager::StopAwaiting(const Job& job) {
  for (const std::string& id : job.waiting_for()) {
    auto it = dependents_.find(id);
    if (it == dependents_.end()) continue;
    auto& waiting = it->second;
    waiting.erase(std::remove(waiting.begin(), waiting.end(), job.id()), waiting.end());
    if (waiting.empty()) dependents_.erase(it);
  }
}

void JobManager::DependencyEnded(const Job& ended) {
  absl::MutexLock lock(&mu_);
  MoveDependentsOf(ended);
}

void JobManager::MoveDependentsOf(const Job& ended) {
  auto it = dependents_.find(ended.id());
  if (it == dependents_.end()) return;
  std::vector<std::string> waiting = std::move(it->second);
  dependents_.erase(it);
  for (const std::string& id : waiting) MoveDependent(id, {&ended});
}

void JobManager::MoveDependent(const std::string& job_id, const std::vector<const Job*>& ended) {
  auto loaded = Load(job_id, /*with_params=*/false);
  if (!loaded.ok()) return;  // removed meanwhile
  LiveJob& live = **loaded;
  const Job before = live.job;
  const JobEvent::Type event = DependenciesEnded(live.job, ended, absl::Now());
  if (event == JobEvent::TYPE_UNSPECIFIED) return;
  Batch batch;
  if (live.job.state() == Job::QUEUED) SetQueueKey(live, batch);
  if (v1::IsFinished(live.job.state())) StopAwaiting(before);
  // A failed write stops the store's writes; the move is made again when it recovers
  // (LoadWaiting), as at start.
  if (!Commit(live, event, std::move(batch), nullptr).ok()) return;
  if (live.job.state() == Job::QUEUED) Enqueue(live);  // an ended one leaves once written
}

absl::Status JobManager::LoadWaiting() {
  dependents_.clear();
  std::vector<Job> waiting;
  const std::string prefix = storage::ByStatePrefix(Job::WAITING);
  absl::Status read;
  absl::Status scan = store_->Scan(Cf::kByState, prefix, false, [&](auto key, auto) {
    if (!absl::StartsWith(key, prefix)) return false;
    if (key.size() < storage::kByTimeKeyLength) return true;
    auto job = store_->GetJob(std::string(key.substr(key.size() - kJobIdLength)));
    if (job.ok() && job->state() == Job::WAITING) waiting.push_back(*std::move(job));
    if (!job.ok() && !absl::IsNotFound(job.status())) read = job.status();
    return read.ok();
  });
  if (!scan.ok()) return scan;
  if (!read.ok()) return read;
  // A dependency that ended before a crash let its dependents move is handled now.
  absl::flat_hash_map<std::string, std::optional<Job>> ended;
  for (const Job& job : waiting) {
    if (job.has_batch()) {  // a batch's parent: held, its children's ends find it (batches.cc)
      Hold(job);
      continue;
    }
    Await(job);
    for (const std::string& id : job.waiting_for()) {
      if (ended.contains(id)) continue;
      auto dependency = store_->GetJob(id);
      if (absl::IsNotFound(dependency.status())) {
        // Removed, so it had ended (only ended jobs are removed); how is not known.
        Job gone;
        gone.set_id(id);
        gone.set_state(Job::CANCELLED);
        gone.mutable_error()->set_message("the job was removed");
        ended[id] = std::move(gone);
        continue;
      }
      if (!dependency.ok()) return dependency.status();
      ended[id] = v1::IsFinished(dependency->state()) ? std::optional<Job>(*std::move(dependency))
                                                     : std::nullopt;
    }
  }
  for (const auto& [id, dependency] : ended) {
    if (dependency.has_value()) MoveDependentsOf(*dependency);
  }
  return absl::OkStatus();
}

}  // namespace jobstream::jobs
