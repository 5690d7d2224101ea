#include "server/jobs/job_queue.h"

#include <algorithm>

#include "server/storage/keys.h"

namespace jobstream::jobs {

uint32_t JobQueue::Intern(absl::string_view type, absl::string_view tenant) {
  auto [it, inserted] = lane_index_.try_emplace(
      std::make_pair(std::string(type), std::string(tenant)), static_cast<uint32_t>(lanes_.size()));
  if (inserted) {
    lanes_.push_back(Lane{std::string(type), std::string(tenant), {}, 0});
    type_lanes_[std::string(type)].push_back(it->second);
  }
  return it->second;
}

const std::vector<uint32_t>& JobQueue::LanesOf(absl::string_view type) const {
  static const std::vector<uint32_t> kNone;
  auto it = type_lanes_.find(type);
  return it == type_lanes_.end() ? kNone : it->second;
}

std::optional<std::pair<uint32_t, JobQueue::Item>> JobQueue::Parse(const std::string& key) {
  auto entry = storage::ParseQueueKey(key);
  if (!entry || entry->job_id.size() != 26) return std::nullopt;
  Item item{entry->priority, entry->ready_ms, {}};
  std::copy(entry->job_id.begin(), entry->job_id.end(), item.id.begin());
  return std::make_pair(Intern(entry->type, entry->tenant), item);
}

std::string JobQueue::KeyOf(uint32_t lane, const Item& item) const {
  return storage::QueueKey(lanes_[lane].type, lanes_[lane].tenant, item.priority, item.ready_ms,
                           absl::string_view(item.id.data(), item.id.size()));
}

void JobQueue::Count(uint32_t lane, int delta) {
  lanes_[lane].count += delta;
  int64_t& of_tenant = tenant_counts_[lanes_[lane].tenant];
  of_tenant += delta;
  if (of_tenant == 0) tenant_counts_.erase(lanes_[lane].tenant);
}

void JobQueue::Add(const std::string& key, int64_t now_ms) {
  auto parsed = Parse(key);
  if (!parsed) return;
  auto [lane, item] = *parsed;
  const bool added = item.ready_ms <= now_ms
                         ? lanes_[lane].ready.insert(item).second
                         : scheduled_.insert({item.ready_ms, lane, item}).second;
  if (added) Count(lane, 1);
}

bool JobQueue::Remove(const std::string& key) {
  auto parsed = Parse(key);
  if (!parsed) return false;
  auto [lane, item] = *parsed;
  if (lanes_[lane].ready.erase(item) > 0) {
    lanes_[lane].served = ++served_clock_;
  } else if (scheduled_.erase({item.ready_ms, lane, item}) == 0) {
    return false;
  }
  Count(lane, -1);
  return true;
}

std::vector<std::string> JobQueue::Promote(int64_t now_ms) {
  std::vector<std::string> promoted;
  while (!scheduled_.empty() && scheduled_.begin()->ready_ms <= now_ms) {
    const Scheduled& due = *scheduled_.begin();
    Lane& lane = lanes_[due.lane];
    if (std::find(promoted.begin(), promoted.end(), lane.type) == promoted.end()) {
      promoted.push_back(lane.type);
    }
    lane.ready.insert(due.item);
    scheduled_.erase(scheduled_.begin());
  }
  return promoted;
}

std::optional<std::string> JobQueue::Next(
    const std::vector<std::string>& types,
    const std::function<bool(absl::string_view type)>& admit,
    const std::string* only_tenant) const {
  const Item* best = nullptr;
  uint32_t best_lane = 0;
  for (const std::string& type : types) {
    bool admitted = false, asked = false;
    for (uint32_t lane : LanesOf(type)) {
      const Lane& l = lanes_[lane];
      if (l.ready.empty() || (only_tenant != nullptr && l.tenant != *only_tenant)) continue;
      if (!asked) {
        asked = true;
        admitted = !admit || admit(type);
      }
      if (!admitted) break;
      const Item& first = *l.ready.begin();
      // Priority first; then round robin: the lane served least recently; then time.
      const bool better =
          best == nullptr || first.priority > best->priority ||
          (first.priority == best->priority &&
           (l.served < lanes_[best_lane].served ||
            (l.served == lanes_[best_lane].served && first < *best)));
      if (better) {
        best = &first;
        best_lane = lane;
      }
    }
  }
  if (best == nullptr) return std::nullopt;
  return KeyOf(best_lane, *best);
}

std::optional<int64_t> JobQueue::NextDue() const {
  if (scheduled_.empty()) return std::nullopt;
  return scheduled_.begin()->ready_ms;
}

int64_t JobQueue::queued(absl::string_view type) const {
  int64_t n = 0;
  for (uint32_t lane : LanesOf(type)) n += lanes_[lane].count;
  return n;
}

bool JobQueue::HasReady(absl::string_view type) const {
  for (uint32_t lane : LanesOf(type)) {
    if (!lanes_[lane].ready.empty()) return true;
  }
  return false;
}

int64_t JobQueue::queued_of_tenant(const std::string& tenant) const {
  auto it = tenant_counts_.find(tenant);
  return it == tenant_counts_.end() ? 0 : it->second;
}

size_t JobQueue::size() const {
  size_t n = 0;
  for (const Lane& lane : lanes_) n += lane.count;
  return n;
}

}  // namespace jobstream::jobs
