// EventReader: what watchers read from a store, whichever it is (RocksDB's JobStore,
// PostgreSQL's PgStore): a job, its committed events by sequence, a removed job's
// tombstone, and the newest queued jobs for a snapshot.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/storage/committed_event.h"
#include "server/storage/keys.h"

namespace jobstream::storage {

class EventReader {
 public:
  virtual ~EventReader() = default;

  // The job record (without params). NotFound when absent.
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& job_id) const = 0;
  // The tombstone of a removed job, or nullopt.
  virtual absl::StatusOr<std::optional<Tombstone>> GetTombstone(
      const std::string& job_id) const = 0;
  // Events of one job with after < sequence <= until, at most `limit`, in order, each
  // with its wire form.
  virtual absl::StatusOr<std::vector<CommittedEventPtr>> ReadCommittedEvents(
      const std::string& job_id, int64_t after, int64_t until, size_t limit) const = 0;
  // QUEUED jobs, newest first, to `visit` until it returns false; at most `max_read`
  // looked at.
  virtual absl::Status VisitQueuedNewestFirst(size_t max_read,
                                              const std::function<bool(const v1::Job&)>& visit)
      const = 0;
};

}  // namespace jobstream::storage
