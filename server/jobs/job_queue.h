// JobQueue: the order in which QUEUED jobs run. It holds each queued job's queue key
// (storage::QueueKey: type, priority, ready time, id) — never the job itself — split into
// jobs that may run now and jobs waiting for their ready time (run_at, or a retry's
// backoff). Not thread-safe: the JobManager guards it with its lock.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace jobstream::jobs {

class JobQueue {
 public:
  // Adds a key; it is ready at once if its ready time is not after now_ms.
  void Add(const std::string& key, int64_t now_ms);
  // Removes a key, ready or scheduled; false if it was not queued.
  bool Remove(const std::string& key);

  // Makes every job whose ready time has come ready; returns their types (each once).
  std::vector<std::string> Promote(int64_t now_ms);
  // The key of the job to run next among `types` whose type `admit` accepts: the highest
  // priority first, then the earliest ready time, then the oldest id.
  std::optional<std::string> Next(const std::vector<std::string>& types,
                                  const std::function<bool(absl::string_view type)>& admit) const;
  // The earliest ready time of a scheduled job.
  std::optional<int64_t> NextDue() const;

  // Jobs of `type` queued (ready or scheduled), and whether one is ready now.
  int64_t queued(absl::string_view type) const;
  bool HasReady(absl::string_view type) const;
  size_t size() const { return ready_.size() + scheduled_.size(); }

 private:
  // Keys sort by type, then priority (highest first), ready time, id: the first key with a
  // type's prefix is that type's next job.
  std::set<std::string> ready_;
  std::set<std::pair<int64_t, std::string>> scheduled_;
  absl::flat_hash_map<std::string, int64_t> counts_;
};

}  // namespace jobstream::jobs
