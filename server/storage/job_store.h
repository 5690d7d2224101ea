// JobStore: the RocksDB database and typed reads over its column families. Writes go
// through a Batch (usually via GroupCommitter) so one state transition is one atomic
// WriteBatch. Thread-safe: RocksDB handles concurrent reads and writes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "jobstream/v1/jobs.pb.h"
#include "rocksdb/db.h"
#include "server/storage/committed_event.h"
#include "server/storage/event_reader.h"
#include "server/storage/keys.h"
#include "server/storage/records.pb.h"

namespace jobstream::storage {

// A list of mutations, applied atomically by JobStore::Write. Kept as plain data so the
// group committer can merge many into one WriteBatch, and replace a pending one.
class Batch {
 public:
  void Put(Cf cf, std::string key, std::string value);
  void Delete(Cf cf, std::string key);
  void DeleteRange(Cf cf, std::string begin, std::string end);  // [begin, end)
  bool empty() const { return ops_.empty(); }
  void Clear() { ops_.clear(); }

 private:
  friend class JobStore;
  enum class Op { kPut, kDelete, kDeleteRange };
  struct Mutation {
    Op op;
    Cf cf;
    std::string key;
    std::string value;  // for kDeleteRange: the end key
  };
  std::vector<Mutation> ops_;
};

class JobStore : public EventReader {
 public:
  // Opens (creating if needed) the database in `dir`.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& dir);
  ~JobStore();  // flushes and closes

  // Applies every batch atomically in one WriteBatch; `sync` waits for the WAL fsync.
  absl::Status Write(const std::vector<const Batch*>& batches, bool sync);
  absl::Status Write(const Batch& batch, bool sync) { return Write({&batch}, sync); }
  // After a failed write (RocksDB's background error): takes writes again if the cause
  // has gone, as DB::Resume does; OK if RocksDB has already recovered by itself (for a
  // full disk it retries once enough space is free). UNAVAILABLE while it cannot.
  absl::Status Resume();

  // Artifact chunks written ahead of their commit: without the WAL (the bytes are written
  // once, to blob files, not twice), so durable only after FlushArtifacts.
  absl::Status WriteUnlogged(const Batch& batch);
  absl::Status FlushArtifacts();
  // Compacts the artifacts of the jobs from first to last id so the space of removed
  // artifacts is given back.
  absl::Status CompactArtifacts(const std::string& first_job_id, const std::string& last_job_id);
  // The job and its artifact record `name` (nullopt if none), read at one point in time.
  // NotFound: no such job.
  absl::StatusOr<std::pair<v1::Job, std::optional<ArtifactRecord>>> GetJobAndArtifactRecord(
      const std::string& job_id, const std::string& name) const;
  // A committed artifact's record; NotFound when absent.
  absl::StatusOr<ArtifactRecord> GetArtifactRecord(const std::string& job_id,
                                                   const std::string& name) const;
  // One chunk of an upload's bytes; NotFound when absent.
  absl::Status ReadArtifactChunk(const std::string& job_id, uint64_t upload_id, uint32_t chunk,
                                 std::string* data) const;

  // A job's webhook deliveries: one, or all in sequence order.
  absl::StatusOr<v1::WebhookDelivery> GetWebhookDelivery(const std::string& job_id,
                                                         int64_t sequence) const;
  absl::StatusOr<std::vector<v1::WebhookDelivery>> ListWebhookDeliveries(
      const std::string& job_id) const;

  // The job record (without params). NotFound when absent.
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) const override;
  // The job's params (empty if it has none).
  absl::StatusOr<google::protobuf::Struct> GetParams(const std::string& job_id) const;
  // The tombstone of a removed job, or nullopt.
  absl::StatusOr<std::optional<Tombstone>> GetTombstone(const std::string& job_id) const override;
  // The job id a request key (RequestKey) created, or nullopt.
  absl::StatusOr<std::optional<std::string>> GetRequest(const std::string& request_id) const;

  // Events of one job with after < sequence <= until, at most `limit`, in order.
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id,
                                                       int64_t after, int64_t until,
                                                       size_t limit) const;

  // The same, each with its stored bytes as the wire form (for replay to watchers).
  absl::StatusOr<std::vector<CommittedEventPtr>> ReadCommittedEvents(const std::string& job_id,
                                                                     int64_t after, int64_t until,
                                                                     size_t limit) const override;
  // From the by_state index.
  absl::Status VisitQueuedNewestFirst(size_t max_read,
                                      const std::function<bool(const v1::Job&)>& visit)
      const override;

  // Calls fn(key, value) for each key of `cf` starting at `start` (forward) or at the
  // last key <= `start` (reverse; empty start means the end), until fn returns false.
  absl::Status Scan(Cf cf, const std::string& start, bool reverse,
                    const std::function<bool(absl::string_view, absl::string_view)>& fn) const;

  // An iterator over `cf` (for merging several ranges, as ListJobs does).
  std::unique_ptr<rocksdb::Iterator> NewIterator(Cf cf) const;

  rocksdb::DB* db() { return db_.get(); }

 private:
  JobStore() = default;
  absl::Status Build(const std::vector<const Batch*>& batches, rocksdb::WriteBatch* wb) const;
  rocksdb::ColumnFamilyHandle* handle(Cf cf) const {
    return handles_[static_cast<size_t>(cf) + 1];  // [0] is the default family
  }
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

// Converts a RocksDB status, keeping NotFound distinct.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what);

}  // namespace jobstream::storage
