#include "server/jobs/job_queue.h"

#include <algorithm>

#include "server/storage/keys.h"

namespace jobstream::jobs {

uint32_t JobQueue::Intern(absl::string_view type) {
  auto [it, inserted] = type_index_.emplace(std::string(type), types_.size());
  if (inserted) types_.push_back(TypeQueue{std::string(type), {}, 0});
  return it->second;
}

std::optional<uint32_t> JobQueue::Find(absl::string_view type) const {
  auto it = type_index_.find(type);
  if (it == type_index_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::pair<uint32_t, JobQueue::Item>> JobQueue::Parse(const std::string& key) {
  auto entry = storage::ParseQueueKey(key);
  if (!entry || entry->job_id.size() != 26) return std::nullopt;
  Item item{entry->priority, entry->ready_ms, {}};
  std::copy(entry->job_id.begin(), entry->job_id.end(), item.id.begin());
  return std::make_pair(Intern(entry->type), item);
}

std::string JobQueue::KeyOf(uint32_t type, const Item& item) const {
  return storage::QueueKey(types_[type].name, item.priority, item.ready_ms,
                           absl::string_view(item.id.data(), item.id.size()));
}

void JobQueue::Add(const std::string& key, int64_t now_ms) {
  auto parsed = Parse(key);
  if (!parsed) return;
  auto [type, item] = *parsed;
  const bool added = item.ready_ms <= now_ms
                         ? types_[type].ready.insert(item).second
                         : scheduled_.insert({item.ready_ms, type, item}).second;
  if (added) ++types_[type].count;
}

bool JobQueue::Remove(const std::string& key) {
  auto parsed = Parse(key);
  if (!parsed) return false;
  auto [type, item] = *parsed;
  if (types_[type].ready.erase(item) == 0 && scheduled_.erase({item.ready_ms, type, item}) == 0) {
    return false;
  }
  --types_[type].count;
  return true;
}

std::vector<std::string> JobQueue::Promote(int64_t now_ms) {
  std::vector<std::string> promoted;
  while (!scheduled_.empty() && scheduled_.begin()->ready_ms <= now_ms) {
    const Scheduled& due = *scheduled_.begin();
    TypeQueue& queue = types_[due.type];
    if (std::find(promoted.begin(), promoted.end(), queue.name) == promoted.end()) {
      promoted.push_back(queue.name);
    }
    queue.ready.insert(due.item);
    scheduled_.erase(scheduled_.begin());
  }
  return promoted;
}

std::optional<std::string> JobQueue::Next(
    const std::vector<std::string>& types,
    const std::function<bool(absl::string_view type)>& admit) const {
  const Item* best = nullptr;
  uint32_t best_type = 0;
  for (const std::string& name : types) {
    std::optional<uint32_t> type = Find(name);
    if (!type || types_[*type].ready.empty() || (admit && !admit(name))) continue;
    const Item& first = *types_[*type].ready.begin();
    if (best == nullptr || first < *best) {  // the same order across types as within one
      best = &first;
      best_type = *type;
    }
  }
  if (best == nullptr) return std::nullopt;
  return KeyOf(best_type, *best);
}

std::optional<int64_t> JobQueue::NextDue() const {
  if (scheduled_.empty()) return std::nullopt;
  return scheduled_.begin()->ready_ms;
}

int64_t JobQueue::queued(absl::string_view type) const {
  std::optional<uint32_t> index = Find(type);
  return index ? types_[*index].count : 0;
}

bool JobQueue::HasReady(absl::string_view type) const {
  std::optional<uint32_t> index = Find(type);
  return index && !types_[*index].ready.empty();
}

size_t JobQueue::size() const {
  size_t n = 0;
  for (const TypeQueue& queue : types_) n += queue.count;
  return n;
}

}  // namespace jobstream::jobs
