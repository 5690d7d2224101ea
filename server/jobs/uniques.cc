// JobManager, part six: unique keys on RocksDB (unique.h decides whether a job holds its
// key). The job that took a key last is found in memory while its Submit is being
// written, else through the requests family; Submit looks under the manager's lock, so of
// two colliding Submits one creates and the other finds it.
#include "server/jobs/job_manager.h"
#include "server/jobs/unique.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

using v1::Job;

absl::StatusOr<std::optional<std::string>> JobManager::UniqueHolder(const std::string& key,
                                                                    absl::Time now) {
  std::string holder;
  if (auto it = uniques_in_flight_.find(key); it != uniques_in_flight_.end()) {
    holder = it->second;
  } else {
    auto stored = store_->GetRequest(key);
    if (!stored.ok()) return stored.status();
    if (!stored->has_value()) return std::nullopt;
    holder = **stored;
  }
  Job read;
  const Job* job = nullptr;
  if (auto it = live_.find(holder); it != live_.end()) {
    job = &it->second.job;
  } else {
    auto stored = store_->GetJob(holder);
    if (absl::IsNotFound(stored.status())) return std::nullopt;  // removed: the key is free
    if (!stored.ok()) return stored.status();
    read = *std::move(stored);
    job = &read;
  }
  if (!HoldsUniqueKey(*job, now)) return std::nullopt;
  return holder;
}

void JobManager::AnswerDeduplicated(const std::string& job_id, JobCallback done) {
  // Once everything queued before is durable: the holder may have just been submitted.
  absl::Status queued = committer_.Barrier([this, job_id, done](absl::Status written) {
    if (!written.ok()) return done(written);
    auto job = Get(job_id, auth::Scope::Everything());
    if (job.ok()) job->set_deduplicated(true);
    done(std::move(job));
  });
  if (!queued.ok()) done(queued);
}

void JobManager::ForgetUnique(const Job& job, storage::Batch& batch) const {
  if (job.unique_key().empty()) return;
  const std::string key = storage::UniqueKey(job.tenant(), job.unique_key());
  auto holder = store_->GetRequest(key);
  // A newer job that took the key keeps it.
  if (holder.ok() && holder->has_value() && **holder == job.id()) {
    batch.Delete(storage::Cf::kRequests, key);
  }
}

}  // namespace jobstream::jobs
