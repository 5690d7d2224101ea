// Column families and key encoding. Integers are big-endian so that RocksDB's bytewise
// order is numeric order: a prefix scan of a job's events returns them by sequence.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

namespace jobstream::storage {

enum class Cf : int {
  kJobs, kParams, kEvents, kQueue, kLeases, kRequests, kByTime, kTombstones, kByState,
  kByTypeState, kMeta, kArtifacts, kUploads, kWebhooks, kWebhookQueue, kSchedules, kScheduleDue
};

struct CfInfo {
  Cf cf;
  const char* name;
  const char* holds;
};

// Every column family, declared once. The default family is unused.
// Params live apart from the job record: they are written once, while the record is
// rewritten on every step and progress report.
// Artifact bytes live in blob files (see JobStore::Open); every key of a job's artifacts
// starts with its id, so one range delete removes them all.
inline constexpr std::array<CfInfo, 17> kColumnFamilies = {{
    {Cf::kJobs, "jobs", "job id -> Job without params"},
    {Cf::kParams, "params", "job id -> google.protobuf.Struct"},
    {Cf::kEvents, "events", "job id | be64 sequence -> JobEvent"},
    {Cf::kQueue, "queue",
     "type [0x01 tenant] [0x02 concurrency key] 0x00 | be32 inverted priority | be64 ready ms "
     "| id -> ()"},
    {Cf::kLeases, "leases", "job id -> LeaseRecord (records.proto)"},
    {Cf::kRequests, "requests",
     "[tenant 0x00] request id -> job id; 0x01 tenant 0x00 unique key -> job id"},
    {Cf::kByTime, "by_time", "be64 create ms | id -> ()"},
    {Cf::kTombstones, "tombstones", "job id -> be64 removal ms | reason [0x00 tenant]"},
    {Cf::kByState, "by_state", "state byte | be64 create ms | id -> ()"},
    {Cf::kByTypeState, "by_type_state", "type 0x00 | state byte | be64 create ms | id -> ()"},
    {Cf::kMeta, "meta", "name -> value (e.g. which indexes are built)"},
    {Cf::kArtifacts, "artifacts",
     "id 'n' name -> ArtifactRecord; id 'u' be64 upload | be32 chunk -> bytes"},
    {Cf::kUploads, "uploads", "be64 upload -> job id, while an upload's chunks precede its commit"},
    {Cf::kWebhooks, "webhooks", "job id | be64 sequence -> WebhookDelivery"},
    {Cf::kWebhookQueue, "webhook_queue", "be64 due ms | job id | be64 sequence -> ()"},
    {Cf::kSchedules, "schedules", "tenant 0x00 schedule id -> ScheduleRecord"},
    {Cf::kScheduleDue, "schedule_due", "be64 wake ms | tenant 0x00 schedule id -> ()"},
}};

void PutBigEndian32(std::string* dst, uint32_t v);
void PutBigEndian64(std::string* dst, uint64_t v);
uint32_t GetBigEndian32(absl::string_view src);  // src.size() >= 4
uint64_t GetBigEndian64(absl::string_view src);  // src.size() >= 8

// events: id | be64(seq). Job ids have a fixed length, so the id is a clean prefix.
std::string EventKey(absl::string_view job_id, int64_t sequence);
int64_t EventKeySequence(absl::string_view key);

// queue: a lane per type, tenant and concurrency key (a job without a tenant or key: the
// type alone), ordered so the first key of a lane is its job to run next: higher priority
// first, then earlier ready time, then older id.
std::string QueueKey(absl::string_view type, absl::string_view tenant, int32_t priority,
                     int64_t ready_ms, absl::string_view job_id,
                     absl::string_view concurrency_key = "");
std::string QueuePrefix(absl::string_view type);
struct QueueEntry {
  std::string type;
  std::string tenant;
  int32_t priority;
  int64_t ready_ms;
  std::string job_id;
  std::string concurrency_key;  // "" in keys written before there were any
};
std::optional<QueueEntry> ParseQueueKey(absl::string_view key);

// by_time: creation order, for newest-first listing and retention.
std::string ByTimeKey(int64_t create_ms, absl::string_view job_id);
std::optional<std::pair<int64_t, std::string>> ParseByTimeKey(absl::string_view key);

// by_state and by_type_state: every job once, under its current state, newest last, so
// listing by state or type reads just those jobs. The key ends like a by_time key
// (create ms | id): that suffix is the position a page token holds, whatever the index.
std::string ByStatePrefix(int state);
std::string ByTypeStatePrefix(absl::string_view type, int state);
std::string ByStateKey(int state, int64_t create_ms, absl::string_view job_id);
std::string ByTypeStateKey(absl::string_view type, int state, int64_t create_ms,
                           absl::string_view job_id);
inline constexpr size_t kByTimeKeyLength = 8 + 26;  // be64 ms | job id

// tombstones: when and why a job was removed ("deleted" or "expired"), and whose it was.
struct Tombstone {
  int64_t removed_ms;
  std::string reason;
  std::string tenant;
};
std::string TombstoneValue(int64_t removed_ms, absl::string_view reason,
                           absl::string_view tenant);
std::optional<Tombstone> ParseTombstoneValue(absl::string_view value);

// requests: a request_id is the submitter's tenant's own.
std::string RequestKey(absl::string_view tenant, absl::string_view request_id);
// requests also holds unique keys: 0x01 tenant 0x00 unique key -> the id of the job that
// took it last (a request key never starts with 0x01).
std::string UniqueKey(absl::string_view tenant, absl::string_view unique_key);
// requests also holds batches': 0x02 tenant 0x00 request_id -> the parent's id (a batch's
// request ids are apart from Submit's), and 0x03 parent id -> its children's ids, end to
// end (kJobIdLength bytes each).
std::string BatchRequestKey(absl::string_view tenant, absl::string_view request_id);
std::string BatchChildrenKey(absl::string_view parent_id);

// artifacts: a committed artifact's record, its chunks (an upload id keeps an upload in
// progress apart from the artifact it will replace), and the range of all of a job's.
std::string ArtifactRecordKey(absl::string_view job_id, absl::string_view name);
std::string ArtifactChunkKey(absl::string_view job_id, uint64_t upload_id, uint32_t chunk);
std::pair<std::string, std::string> ArtifactUploadRange(absl::string_view job_id,
                                                        uint64_t upload_id);
std::pair<std::string, std::string> JobArtifactsRange(absl::string_view job_id);
// uploads: be64 upload id.
std::string UploadKey(uint64_t upload_id);

// webhook_queue: deliveries by when they are due.
std::string WebhookQueueKey(int64_t due_ms, absl::string_view job_id, int64_t sequence);
struct WebhookQueueEntry {
  int64_t due_ms;
  std::string job_id;
  int64_t sequence;
};
std::optional<WebhookQueueEntry> ParseWebhookQueueKey(absl::string_view key);

}  // namespace jobstream::storage
