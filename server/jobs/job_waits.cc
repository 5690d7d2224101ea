#include "server/jobs/job_waits.h"

#include "absl/strings/match.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

std::shared_ptr<JobWait> JobWaits::Add(const std::string& job_id,
                                       std::function<void(absl::StatusOr<v1::Job>)> done,
                                       absl::Time deadline) {
  auto wait = std::make_shared<JobWait>();
  wait->key = job_id + "/";
  storage::PutBigEndian64(&wait->key, ++counter_);
  wait->job_id = job_id;
  wait->done = std::move(done);
  by_key_[wait->key] = wait;
  deadlines_.Set(wait->key, absl::ToInt64Milliseconds(
                                absl::Ceil(deadline - absl::UnixEpoch(), absl::Milliseconds(1))));
  return wait;
}

std::shared_ptr<JobWait> JobWaits::Take(const std::string& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  std::shared_ptr<JobWait> wait = std::move(it->second);
  by_key_.erase(it);
  deadlines_.Clear(key);
  return wait;
}

JobWaits::Waits JobWaits::TakeJob(const std::string& job_id) {
  Waits taken;
  const std::string prefix = job_id + "/";
  for (auto it = by_key_.lower_bound(prefix);
       it != by_key_.end() && absl::StartsWith(it->first, prefix);) {
    deadlines_.Clear(it->first);
    taken.push_back(std::move(it->second));
    it = by_key_.erase(it);
  }
  return taken;
}

JobWaits::Waits JobWaits::TakeDue(int64_t now_ms) {
  Waits taken;
  for (const std::string& key : deadlines_.TakeDue(now_ms)) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) continue;
    taken.push_back(std::move(it->second));
    by_key_.erase(it);
  }
  return taken;
}

JobWaits::Waits JobWaits::TakeAll() {
  Waits taken;
  for (auto& [key, wait] : by_key_) {
    deadlines_.Clear(key);
    taken.push_back(std::move(wait));
  }
  by_key_.clear();
  return taken;
}

}  // namespace jobstream::jobs
