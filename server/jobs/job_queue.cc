#include "server/jobs/job_queue.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "server/storage/keys.h"

namespace jobstream::jobs {

bool JobQueue::Rank::operator<(const Rank& o) const {
  if (priority != o.priority) return priority > o.priority;
  return std::tie(served, ready_ms, id, index) < std::tie(o.served, o.ready_ms, o.id, o.index);
}

bool JobQueue::Rank::operator==(const Rank& o) const {
  return std::tie(priority, served, ready_ms, id, index) ==
         std::tie(o.priority, o.served, o.ready_ms, o.id, o.index);
}

JobQueue::JobQueue(absl::flat_hash_map<std::string, KeyLimit> limits)
    : limits_(std::move(limits)) {}

JobQueue::TypeQueue& JobQueue::TypeOf(absl::string_view type) {
  auto [it, inserted] = types_.try_emplace(type);
  if (inserted) {
    it->second.type = std::string(type);
    if (auto limit = limits_.find(type); limit != limits_.end()) it->second.limit = limit->second;
  }
  return it->second;
}

uint32_t JobQueue::Intern(absl::string_view type, absl::string_view tenant,
                          absl::string_view key) {
  TypeQueue& queue = TypeOf(type);
  auto [group_it, new_group] =
      queue.groups_by_tenant.try_emplace(tenant, static_cast<uint32_t>(groups_.size()));
  if (new_group) {
    Group& group = groups_.emplace_back();
    group.queue = &queue;
    group.tenant = std::string(tenant);
  }
  const uint32_t group = group_it->second;
  auto lane_it = groups_[group].lanes_by_key.find(key);
  if (lane_it != groups_[group].lanes_by_key.end()) return lane_it->second;
  uint32_t lane;
  if (!free_lanes_.empty()) {
    lane = free_lanes_.back();
    free_lanes_.pop_back();
  } else {
    lane = static_cast<uint32_t>(lanes_.size());
    lanes_.emplace_back();
  }
  Lane& l = lanes_[lane];
  l = Lane();
  l.group = group;
  l.key = std::string(key);
  l.tokens = std::max(1.0, queue.limit.rate);  // a new key's bucket is full
  groups_[group].lanes_by_key.emplace(l.key, lane);
  return lane;
}

std::optional<uint32_t> JobQueue::Find(absl::string_view type, absl::string_view tenant,
                                       absl::string_view key) const {
  auto queue = types_.find(type);
  if (queue == types_.end()) return std::nullopt;
  auto group = queue->second.groups_by_tenant.find(tenant);
  if (group == queue->second.groups_by_tenant.end()) return std::nullopt;
  const Group& g = groups_[group->second];
  auto lane = g.lanes_by_key.find(key);
  if (lane == g.lanes_by_key.end()) return std::nullopt;
  return lane->second;
}

std::optional<std::pair<uint32_t, JobQueue::Item>> JobQueue::Parse(const std::string& key,
                                                                   bool make) {
  auto entry = storage::ParseQueueKey(key);
  if (!entry || entry->job_id.size() != 26) return std::nullopt;
  Item item{entry->priority, entry->ready_ms, {}};
  std::copy(entry->job_id.begin(), entry->job_id.end(), item.id.begin());
  std::optional<uint32_t> lane =
      make ? Intern(entry->type, entry->tenant, entry->concurrency_key)
           : Find(entry->type, entry->tenant, entry->concurrency_key);
  if (!lane) return std::nullopt;
  return std::make_pair(*lane, item);
}

std::string JobQueue::KeyOf(uint32_t lane, const Item& item) const {
  const Lane& l = lanes_[lane];
  const Group& g = groups_[l.group];
  return storage::QueueKey(g.queue->type, g.tenant, item.priority, item.ready_ms,
                           absl::string_view(item.id.data(), item.id.size()), l.key);
}

void JobQueue::Count(uint32_t lane, int delta) {
  Lane& l = lanes_[lane];
  const Group& g = groups_[l.group];
  l.count += delta;
  g.queue->count += delta;
  size_ += delta;
  int64_t& of_tenant = tenant_counts_[g.tenant];
  of_tenant += delta;
  if (of_tenant == 0) tenant_counts_.erase(g.tenant);
}

double JobQueue::Tokens(const Lane& lane, const KeyLimit& limit, int64_t now_ms) const {
  const double capacity = std::max(1.0, limit.rate);
  const double refill = static_cast<double>(std::max<int64_t>(0, now_ms - lane.tokens_ms)) *
                        limit.rate / 1000.0;
  return std::min(capacity, lane.tokens + refill);
}

void JobQueue::Busy(uint32_t lane) {
  Lane& l = lanes_[lane];
  if (l.idle_until_ms == 0) return;
  idle_.erase({l.idle_until_ms, lane});
  l.idle_until_ms = 0;
}

void JobQueue::Reindex(uint32_t lane) {
  Lane& l = lanes_[lane];
  Group& g = groups_[l.group];
  TypeQueue& queue = *g.queue;
  const KeyLimit& limit = queue.limit;
  const bool under = limit.concurrency == 0 || l.running < limit.concurrency;
  const bool may_start = !l.ready.empty() && under && l.wait_until_ms == 0;
  std::optional<Rank> rank;
  if (may_start) {
    const Item& first = *l.ready.begin();
    rank = Rank{first.priority, l.served, first.ready_ms, first.id, lane};
  }
  if (rank != l.rank) {
    if (l.rank) g.lanes.erase(*l.rank);
    if (rank) g.lanes.insert(*rank);
    l.rank = rank;
  }
  if (!l.ready.empty() && !may_start) {
    queue.held.insert(lane);
  } else if (limit.limited()) {  // only a limit holds a lane back
    queue.held.erase(lane);
  }
  std::optional<Rank> group_rank;
  if (!g.lanes.empty()) {
    const Rank& best = *g.lanes.begin();
    group_rank = Rank{best.priority, g.served, best.ready_ms, best.id, l.group};
  }
  if (group_rank != g.rank) {
    if (g.rank) queue.groups.erase(*g.rank);
    if (group_rank) queue.groups.insert(*group_rank);
    g.rank = group_rank;
  }
}

void JobQueue::Tidy(uint32_t lane, int64_t now_ms) {
  Lane& l = lanes_[lane];
  if (l.key.empty() || l.count > 0 || l.running > 0 || l.wait_until_ms != 0) return;
  Group& g = groups_[l.group];
  const KeyLimit& limit = g.queue->limit;
  Busy(lane);
  if (limit.rate > 0) {
    const double capacity = std::max(1.0, limit.rate);
    const double tokens = Tokens(l, limit, now_ms);
    if (tokens < capacity - 1e-9) {  // forgetting it now would give its key a full bucket early
      l.idle_until_ms = now_ms + static_cast<int64_t>(
                                     std::ceil((capacity - tokens) * 1000.0 / limit.rate));
      idle_.insert({l.idle_until_ms, lane});
      return;
    }
  }
  g.queue->held.erase(lane);
  g.lanes_by_key.erase(l.key);
  l = Lane();
  free_lanes_.push_back(lane);
}

void JobQueue::Add(const std::string& key, int64_t now_ms) {
  auto parsed = Parse(key, /*make=*/true);
  if (!parsed) return;
  auto [lane, item] = *parsed;
  Lane& l = lanes_[lane];
  Busy(lane);
  if (item.ready_ms <= now_ms) {
    if (!l.ready.insert(item).second) return;
    Count(lane, 1);
    Reindex(lane);
  } else if (scheduled_.insert({item.ready_ms, lane, item}).second) {
    Count(lane, 1);
  }
}

bool JobQueue::Remove(const std::string& key, int64_t now_ms) {
  auto parsed = Parse(key, /*make=*/false);
  if (!parsed) return false;
  auto [lane, item] = *parsed;
  Lane& l = lanes_[lane];
  if (l.ready.erase(item) > 0) {
    l.served = groups_[l.group].served = ++served_clock_;
    Count(lane, -1);
    Reindex(lane);
  } else if (scheduled_.erase({item.ready_ms, lane, item}) > 0) {
    Count(lane, -1);
  } else {
    return false;
  }
  Tidy(lane, now_ms);
  return true;
}

bool JobQueue::Start(const std::string& key, int64_t now_ms) {
  auto parsed = Parse(key, /*make=*/false);
  if (!parsed) return false;
  auto [lane, item] = *parsed;
  Lane& l = lanes_[lane];
  if (l.ready.erase(item) == 0 && scheduled_.erase({item.ready_ms, lane, item}) == 0) {
    return false;
  }
  Group& g = groups_[l.group];
  const KeyLimit& limit = g.queue->limit;
  l.served = g.served = ++served_clock_;
  Count(lane, -1);
  if (limit.limited()) ++l.running;
  if (limit.rate > 0) {
    l.tokens = Tokens(l, limit, now_ms) - 1;
    l.tokens_ms = now_ms;
    if (l.tokens < 1) {
      l.wait_until_ms =
          now_ms + std::max<int64_t>(1, static_cast<int64_t>(
                                            std::ceil((1 - l.tokens) * 1000.0 / limit.rate)));
      rate_waits_.insert({l.wait_until_ms, lane});
    }
  }
  Reindex(lane);
  return true;
}

void JobQueue::Hold(absl::string_view type, absl::string_view tenant, absl::string_view key) {
  if (!TypeOf(type).limit.limited()) return;
  const uint32_t lane = Intern(type, tenant, key);
  Busy(lane);
  ++lanes_[lane].running;
  Reindex(lane);
}

void JobQueue::Release(absl::string_view type, absl::string_view tenant, absl::string_view key,
                       int64_t now_ms) {
  auto queue = types_.find(type);
  if (queue == types_.end() || !queue->second.limit.limited()) return;
  std::optional<uint32_t> lane = Find(type, tenant, key);
  if (!lane || lanes_[*lane].running == 0) return;
  --lanes_[*lane].running;
  Reindex(*lane);
  Tidy(*lane, now_ms);
}

std::vector<std::string> JobQueue::Promote(int64_t now_ms) {
  std::vector<std::string> promoted;
  auto woke = [&](uint32_t lane) {
    const std::string& type = groups_[lanes_[lane].group].queue->type;
    if (std::find(promoted.begin(), promoted.end(), type) == promoted.end()) {
      promoted.push_back(type);
    }
  };
  while (!scheduled_.empty() && scheduled_.begin()->ready_ms <= now_ms) {
    const Scheduled due = *scheduled_.begin();
    scheduled_.erase(scheduled_.begin());
    lanes_[due.lane].ready.insert(due.item);
    Reindex(due.lane);
    woke(due.lane);
  }
  while (!rate_waits_.empty() && rate_waits_.begin()->first <= now_ms) {
    const uint32_t lane = rate_waits_.begin()->second;
    rate_waits_.erase(rate_waits_.begin());
    lanes_[lane].wait_until_ms = 0;
    Reindex(lane);
    woke(lane);
    Tidy(lane, now_ms);
  }
  while (!idle_.empty() && idle_.begin()->first <= now_ms) {
    const uint32_t lane = idle_.begin()->second;
    Busy(lane);           // off the list, whatever Tidy finds
    Tidy(lane, now_ms);   // its bucket is full now: it leaves
  }
  return promoted;
}

std::optional<std::string> JobQueue::Next(
    const std::vector<std::string>& types,
    const std::function<bool(absl::string_view type)>& admit,
    const std::string* only_tenant) const {
  const Rank* best_group = nullptr;
  const Rank* best_lane = nullptr;
  for (const std::string& type : types) {
    auto queue = types_.find(type);
    if (queue == types_.end() || queue->second.groups.empty()) continue;
    const Group* group;
    if (only_tenant != nullptr) {
      auto it = queue->second.groups_by_tenant.find(*only_tenant);
      if (it == queue->second.groups_by_tenant.end()) continue;
      group = &groups_[it->second];
      if (!group->rank) continue;
    } else {
      group = &groups_[queue->second.groups.begin()->index];
    }
    const Rank& lane = *group->lanes.begin();
    // Priority first; then the tenant served least recently, then its key; then time.
    const bool better =
        best_group == nullptr ||
        std::make_tuple(-int64_t{group->rank->priority}, group->rank->served, lane.served,
                        lane.ready_ms, lane.id) <
            std::make_tuple(-int64_t{best_group->priority}, best_group->served,
                            best_lane->served, best_lane->ready_ms, best_lane->id);
    if (better && (!admit || admit(type))) {
      best_group = &*group->rank;
      best_lane = &lane;
    }
  }
  if (best_lane == nullptr) return std::nullopt;
  return KeyOf(best_lane->index, *lanes_[best_lane->index].ready.begin());
}

std::optional<int64_t> JobQueue::NextDue() const {
  std::optional<int64_t> due;
  if (!scheduled_.empty()) due = scheduled_.begin()->ready_ms;
  if (!rate_waits_.empty() && (!due || rate_waits_.begin()->first < *due)) {
    due = rate_waits_.begin()->first;
  }
  return due;
}

int64_t JobQueue::queued(absl::string_view type) const {
  auto queue = types_.find(type);
  return queue == types_.end() ? 0 : queue->second.count;
}

bool JobQueue::HasReady(absl::string_view type) const {
  auto queue = types_.find(type);
  return queue != types_.end() && !queue->second.groups.empty();
}

std::optional<int64_t> JobQueue::OldestReadyMs(absl::string_view type) const {
  auto queue = types_.find(type);
  if (queue == types_.end()) return std::nullopt;
  std::optional<int64_t> oldest;
  for (const auto& [tenant, group] : queue->second.groups_by_tenant) {
    for (const auto& [key, lane] : groups_[group].lanes_by_key) {
      const absl::btree_set<Item>& ready = lanes_[lane].ready;
      // Items run by priority, then ready time: the first of each priority is its oldest.
      for (auto it = ready.begin(); it != ready.end();) {
        if (!oldest || it->ready_ms < *oldest) oldest = it->ready_ms;
        Item next_priority{};
        next_priority.priority = it->priority - 1;  // sorts before every item below it
        next_priority.ready_ms = std::numeric_limits<int64_t>::min();
        if (it->priority == std::numeric_limits<int32_t>::min()) break;
        it = ready.lower_bound(next_priority);
      }
    }
  }
  return oldest;
}

int64_t JobQueue::queued_of_tenant(const std::string& tenant) const {
  auto it = tenant_counts_.find(tenant);
  return it == tenant_counts_.end() ? 0 : it->second;
}

std::vector<KeyAtLimit> JobQueue::AtLimit(absl::string_view type, const std::string* only_tenant,
                                          size_t max, int* total) const {
  std::vector<KeyAtLimit> keys;
  *total = 0;
  auto queue = types_.find(type);
  if (queue == types_.end()) return keys;
  for (uint32_t lane : queue->second.held) {
    const Lane& l = lanes_[lane];
    const Group& g = groups_[l.group];
    if (only_tenant != nullptr && g.tenant != *only_tenant) continue;
    ++*total;
    keys.push_back(KeyAtLimit{g.tenant, l.key, l.running, l.count,
                              g.queue->limit.concurrency > 0 &&
                                  l.running >= g.queue->limit.concurrency,
                              l.wait_until_ms});
  }
  std::sort(keys.begin(), keys.end(), [](const KeyAtLimit& a, const KeyAtLimit& b) {
    return std::tie(b.queued, a.tenant, a.key) < std::tie(a.queued, b.tenant, b.key);
  });
  if (keys.size() > max) keys.resize(max);
  return keys;
}

}  // namespace jobstream::jobs
