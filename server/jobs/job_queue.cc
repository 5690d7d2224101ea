#include "server/jobs/job_queue.h"

#include "absl/strings/match.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

void JobQueue::Add(const std::string& key, int64_t now_ms) {
  auto entry = storage::ParseQueueKey(key);
  if (!entry) return;
  bool added = entry->ready_ms <= now_ms ? ready_.insert(key).second
                                         : scheduled_.emplace(entry->ready_ms, key).second;
  if (added) ++counts_[entry->type];
}

bool JobQueue::Remove(const std::string& key) {
  auto entry = storage::ParseQueueKey(key);
  if (!entry) return false;
  if (ready_.erase(key) == 0 && scheduled_.erase({entry->ready_ms, key}) == 0) return false;
  auto count = counts_.find(entry->type);
  if (--count->second == 0) counts_.erase(count);
  return true;
}

std::vector<std::string> JobQueue::Promote(int64_t now_ms) {
  std::vector<std::string> types;
  while (!scheduled_.empty() && scheduled_.begin()->first <= now_ms) {
    auto entry = storage::ParseQueueKey(scheduled_.begin()->second);
    if (std::find(types.begin(), types.end(), entry->type) == types.end()) {
      types.push_back(entry->type);
    }
    ready_.insert(std::move(scheduled_.begin()->second));
    scheduled_.erase(scheduled_.begin());
  }
  return types;
}

std::optional<std::string> JobQueue::Next(
    const std::vector<std::string>& types,
    const std::function<bool(absl::string_view type)>& admit) const {
  std::optional<storage::QueueEntry> best;
  const std::string* best_key = nullptr;
  for (const std::string& type : types) {
    const std::string prefix = storage::QueuePrefix(type);
    auto it = ready_.lower_bound(prefix);
    if (it == ready_.end() || !absl::StartsWith(*it, prefix) || (admit && !admit(type))) {
      continue;
    }
    auto entry = storage::ParseQueueKey(*it);
    if (!best || entry->priority > best->priority ||
        (entry->priority == best->priority && entry->ready_ms < best->ready_ms)) {
      best = std::move(entry);
      best_key = &*it;
    }
  }
  if (best_key == nullptr) return std::nullopt;
  return *best_key;
}

std::optional<int64_t> JobQueue::NextDue() const {
  if (scheduled_.empty()) return std::nullopt;
  return scheduled_.begin()->first;
}

int64_t JobQueue::queued(absl::string_view type) const {
  auto it = counts_.find(type);
  return it == counts_.end() ? 0 : it->second;
}

bool JobQueue::HasReady(absl::string_view type) const {
  const std::string prefix = storage::QueuePrefix(type);
  auto it = ready_.lower_bound(prefix);
  return it != ready_.end() && absl::StartsWith(*it, prefix);
}

}  // namespace jobstream::jobs
