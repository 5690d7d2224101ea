// JobQueue: the order in which QUEUED jobs run, and the per-key limits that hold some back.
// It holds each queued job's place — type, tenant, concurrency key, priority, ready time
// and id, 48 bytes in a B-tree — never the job itself, so a million queued jobs cost tens
// of megabytes. Jobs that may run now are kept apart from jobs waiting for their ready time
// (run_at, or a retry's backoff). The interface speaks storage::QueueKey strings, the keys
// of the `queue` column family.
//
// Fairness: each type has a group per tenant and, in it, a lane per concurrency key. Among
// the jobs of the best priority, the tenant served least recently goes first, and within
// it the key served least recently — round robin at both levels — so one tenant's (or
// one key's) backlog of 100,000 delays another's single job by about one job per tenant
// (key), not by the backlog. Within a lane, jobs go in order.
//
// Per-key limits (a type's key_concurrency and key_rate): a lane at its limit leaves the
// index until a job of it ends or its token bucket refills, so finding the next job never
// walks past held-back lanes: it is the first group of each type asked for, then that
// group's first lane, however many keys there are. Keyed lanes leave memory once idle;
// a lane without a key (one per type and tenant) stays.
//
// Not thread-safe: the JobManager guards it with its lock.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "server/storage/key_limits.h"

namespace jobstream::jobs {

using storage::KeyAtLimit;
using storage::KeyLimit;

class JobQueue {
 public:
  // `limits`: by type; types not named have none.
  explicit JobQueue(absl::flat_hash_map<std::string, KeyLimit> limits = {});
  // Moved, never copied: its groups point into its own map of types.
  JobQueue(JobQueue&&) = default;
  JobQueue& operator=(JobQueue&&) = default;
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Adds a key; it is ready at once if its ready time is not after now_ms.
  void Add(const std::string& key, int64_t now_ms);
  // Removes a key, ready or scheduled, that will not run (cancelled, deleted); false if
  // it was not queued. A ready one's lane counts as served now (it moves back alike).
  bool Remove(const std::string& key, int64_t now_ms);
  // Removes a ready key because its job starts now: its lane is served, counts one more
  // running job and spends a start of its rate. False if it was not queued.
  bool Start(const std::string& key, int64_t now_ms);
  // A running job of a key-limited type: Hold counts one found running (at recovery),
  // Release one that ended (so its key may start another).
  void Hold(absl::string_view type, absl::string_view tenant, absl::string_view key);
  void Release(absl::string_view type, absl::string_view tenant, absl::string_view key,
               int64_t now_ms);

  // Makes every job whose ready time has come ready, and every key whose rate allows a
  // start again; returns the types that may have a job to start (each once).
  std::vector<std::string> Promote(int64_t now_ms);
  // The key of the job to run next among `types` whose type `admit` accepts, of the
  // tenant `only_tenant` if given: the highest priority first; among jobs at it, the
  // tenant served least recently, then its key served least recently; within a key, the
  // earliest ready time, then the oldest id. Never one whose key is at a limit.
  std::optional<std::string> Next(const std::vector<std::string>& types,
                                  const std::function<bool(absl::string_view type)>& admit,
                                  const std::string* only_tenant = nullptr) const;
  // When Promote next has work: the earliest ready time of a scheduled job, or time a
  // rate-bound key may start again.
  std::optional<int64_t> NextDue() const;

  // Jobs of `type` queued (ready or scheduled), and whether one may start now.
  int64_t queued(absl::string_view type) const;
  bool HasReady(absl::string_view type) const;
  // The earliest ready time (Unix ms) of the jobs of `type` that may run now (held back by
  // a key's limit or not); nullopt if none. Visits each lane and, in it, each priority.
  std::optional<int64_t> OldestReadyMs(absl::string_view type) const;
  // Jobs of `tenant` queued, of every type.
  int64_t queued_of_tenant(const std::string& tenant) const;
  size_t size() const { return static_cast<size_t>(size_); }
  // The keys of `type` (of `only_tenant` if given) holding back ready jobs, the most
  // queued first, at most `max`; `total` gets how many there are in all.
  std::vector<KeyAtLimit> AtLimit(absl::string_view type, const std::string* only_tenant,
                                  size_t max, int* total) const;
  // Lanes in memory (keyless and keyed), for tests of their release.
  size_t lanes_in_use() const { return lanes_.size() - free_lanes_.size(); }

 private:
  struct Item {
    int32_t priority;
    int64_t ready_ms;
    std::array<char, 26> id;
    // Run order within a lane.
    bool operator<(const Item& o) const {
      if (priority != o.priority) return priority > o.priority;
      if (ready_ms != o.ready_ms) return ready_ms < o.ready_ms;
      return id < o.id;
    }
  };
  static_assert(sizeof(Item) == 48, "the place of a queued job, as README.md says");
  // Where a lane stands in its group, or a group in its type: the smaller goes first.
  struct Rank {
    int32_t priority;
    uint64_t served;
    int64_t ready_ms;
    std::array<char, 26> id;
    uint32_t index;
    bool operator<(const Rank& o) const;
    bool operator==(const Rank& o) const;
  };
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
    uint32_t group = 0;
    std::string key;  // the concurrency key
    absl::btree_set<Item> ready;
    int64_t count = 0;    // ready and scheduled
    uint64_t served = 0;  // when a job of it last left ready (served_clock_); 0: never
    int64_t running = 0;  // of a key-limited type
    double tokens = 0;    // key_rate's bucket, as of tokens_ms
    int64_t tokens_ms = 0;
    int64_t wait_until_ms = 0;  // rate-bound: no start before then; 0: not
    int64_t idle_until_ms = 0;  // idle, its bucket full then (and it may leave); 0: not
    std::optional<Rank> rank;   // in its group's `lanes` while it may start a job
  };
  struct TypeQueue;
  struct Group {  // a type's lanes of one tenant
    TypeQueue* queue;  // its type's (types_ is a node map: it stays put)
    std::string tenant;
    absl::flat_hash_map<std::string, uint32_t> lanes_by_key;
    absl::btree_set<Rank> lanes;  // those that may start a job now
    uint64_t served = 0;
    std::optional<Rank> rank;  // in its type's `groups` while one of its lanes may start
  };
  struct TypeQueue {
    std::string type;
    KeyLimit limit;
    absl::flat_hash_map<std::string, uint32_t> groups_by_tenant;
    absl::btree_set<Rank> groups;     // those with a lane that may start a job now
    absl::btree_set<uint32_t> held;   // lanes with ready jobs held back by a limit
    int64_t count = 0;
  };
  using Due = std::pair<int64_t, uint32_t>;  // (ms, lane)

  TypeQueue& TypeOf(absl::string_view type);
  // The lane's index, made on first use; or nullopt if it does not exist.
  uint32_t Intern(absl::string_view type, absl::string_view tenant, absl::string_view key);
  std::optional<uint32_t> Find(absl::string_view type, absl::string_view tenant,
                               absl::string_view key) const;
  // A queue key's lane and item; `make` interns its lane, else only an existing one.
  std::optional<std::pair<uint32_t, Item>> Parse(const std::string& key, bool make);
  std::string KeyOf(uint32_t lane, const Item& item) const;
  void Count(uint32_t lane, int delta);
  double Tokens(const Lane& lane, const KeyLimit& limit, int64_t now_ms) const;
  // A lane with work again: no longer waiting to leave memory.
  void Busy(uint32_t lane);
  // Puts a lane (and its group) where it now stands in the index.
  void Reindex(uint32_t lane);
  // A keyed lane with no jobs leaves once its bucket is full (an empty one is as good).
  void Tidy(uint32_t lane, int64_t now_ms);

  absl::flat_hash_map<std::string, KeyLimit> limits_;
  absl::node_hash_map<std::string, TypeQueue> types_;
  std::vector<Group> groups_;
  std::vector<Lane> lanes_;
  std::vector<uint32_t> free_lanes_;
  absl::flat_hash_map<std::string, int64_t> tenant_counts_;
  absl::btree_set<Scheduled> scheduled_;
  absl::btree_set<Due> rate_waits_;  // rate-bound lanes by wait_until_ms
  absl::btree_set<Due> idle_;        // idle keyed lanes by idle_until_ms
  uint64_t served_clock_ = 0;
  int64_t size_ = 0;
};

}  // namespace jobstream::jobs
