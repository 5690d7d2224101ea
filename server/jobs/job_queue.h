// JobQueue: the order in which QUEUED jobs run. It holds each queued job's place — type,
// tenant, priority, ready time and id, 48 bytes in a B-tree — never the job itself, so a
// million queued jobs cost tens of megabytes. Jobs that may run now are kept apart from
// jobs waiting for their ready time (run_at, or a retry's backoff). The interface speaks
// storage::QueueKey strings, the keys of the `queue` column family. Each type has a lane
// per tenant, so a worker can take just its tenant's jobs, and so tenants share a type
// fairly: among lanes whose next job has the same (highest) priority, the one served least
// recently goes first — round robin — so one tenant's backlog of 100,000 delays another's
// single job by about one job per tenant, not by the backlog. Within a lane, jobs go in
// order. Not thread-safe: the JobManager guards it with its lock.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace jobstream::jobs {

class JobQueue {
 public:
  // Adds a key; it is ready at once if its ready time is not after now_ms.
  void Add(const std::string& key, int64_t now_ms);
  // Removes a key, ready or scheduled; false if it was not queued. A ready one's lane
  // counts as served now (it started; or was cancelled, which moves its lane back alike).
  bool Remove(const std::string& key);

  // Makes every job whose ready time has come ready; returns their types (each once).
  std::vector<std::string> Promote(int64_t now_ms);
  // The key of the job to run next among `types` whose type `admit` accepts, of the
  // tenant `only_tenant` if given: the highest priority first; among lanes at it, the
  // lane served least recently; within a lane, the earliest ready time, then the oldest id.
  std::optional<std::string> Next(const std::vector<std::string>& types,
                                  const std::function<bool(absl::string_view type)>& admit,
                                  const std::string* only_tenant = nullptr) const;
  // The earliest ready time of a scheduled job.
  std::optional<int64_t> NextDue() const;

  // Jobs of `type` queued (ready or scheduled), and whether one is ready now.
  int64_t queued(absl::string_view type) const;
  bool HasReady(absl::string_view type) const;
  // Jobs of `tenant` queued, of every type.
  int64_t queued_of_tenant(const std::string& tenant) const;
  size_t size() const;

 private:
  struct Item {
    int32_t priority;
    int64_t ready_ms;
    std::array<char, 26> id;
    // Run order within a type.
    bool operator<(const Item& o) const {
      if (priority != o.priority) return priority > o.priority;
      if (ready_ms != o.ready_ms) return ready_ms < o.ready_ms;
      return id < o.id;
    }
  };
  static_assert(sizeof(Item) == 48, "the place of a queued job, as README.md says");
  struct Scheduled {
    int64_t ready_ms;
    uint32_t lane;
    Item item;
    bool operator<(const Scheduled& o) const {
      if (ready_ms != o.ready_ms) return ready_ms < o.ready_ms;
      if (lane != o.lane) return lane < o.lane;
      return item < o.item;
    }
  };
  struct Lane {
    std::string type;
    std::string tenant;
    absl::btree_set<Item> ready;
    int64_t count = 0;  // ready and scheduled
    uint64_t served = 0;  // when a job of it last left ready (served_clock_); 0: never
  };
  // The lane's index, made on first use.
  uint32_t Intern(absl::string_view type, absl::string_view tenant);
  // The lanes of a type; empty if unknown.
  const std::vector<uint32_t>& LanesOf(absl::string_view type) const;
  std::optional<std::pair<uint32_t, Item>> Parse(const std::string& key);
  std::string KeyOf(uint32_t lane, const Item& item) const;
  void Count(uint32_t lane, int delta);

  std::vector<Lane> lanes_;
  absl::flat_hash_map<std::pair<std::string, std::string>, uint32_t> lane_index_;
  absl::flat_hash_map<std::string, std::vector<uint32_t>> type_lanes_;
  absl::flat_hash_map<std::string, int64_t> tenant_counts_;
  absl::btree_set<Scheduled> scheduled_;
  uint64_t served_clock_ = 0;
};

}  // namespace jobstream::jobs
