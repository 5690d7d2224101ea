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
  kJobs, kParams, kEvents, kQueue, kLeases, kRequests, kByTime, kTombstones
};

struct CfInfo {
  Cf cf;
  const char* name;
  const char* holds;
};

// Every column family, declared once. The default family is unused.
// Params live apart from the job record: they are written once, while the record is
// rewritten on every step and progress report.
inline constexpr std::array<CfInfo, 8> kColumnFamilies = {{
    {Cf::kJobs, "jobs", "job id -> Job without params"},
    {Cf::kParams, "params", "job id -> google.protobuf.Struct"},
    {Cf::kEvents, "events", "job id | be64 sequence -> JobEvent"},
    {Cf::kQueue, "queue", "type 0x00 | be32 inverted priority | be64 ready ms | id -> ()"},
    {Cf::kLeases, "leases", "be64 deadline ms | id -> lease id"},
    {Cf::kRequests, "requests", "request id -> job id"},
    {Cf::kByTime, "by_time", "be64 create ms | id -> ()"},
    {Cf::kTombstones, "tombstones", "job id -> be64 removal ms | reason"},
}};

void PutBigEndian32(std::string* dst, uint32_t v);
void PutBigEndian64(std::string* dst, uint64_t v);
uint32_t GetBigEndian32(absl::string_view src);  // src.size() >= 4
uint64_t GetBigEndian64(absl::string_view src);  // src.size() >= 8

// events: id | be64(seq). Job ids have a fixed length, so the id is a clean prefix.
std::string EventKey(absl::string_view job_id, int64_t sequence);
int64_t EventKeySequence(absl::string_view key);

// queue: ordered so the first key of a type is the job to run next: higher priority
// first, then earlier ready time, then older id.
std::string QueueKey(absl::string_view type, int32_t priority, int64_t ready_ms,
                     absl::string_view job_id);
std::string QueuePrefix(absl::string_view type);
struct QueueEntry {
  std::string type;
  int32_t priority;
  int64_t ready_ms;
  std::string job_id;
};
std::optional<QueueEntry> ParseQueueKey(absl::string_view key);

// leases: by deadline, so a reaper finds expired leases with one scan from the start.
// In-server runs hold a lease with kNoDeadline.
inline constexpr int64_t kNoDeadline = INT64_MAX;
std::string LeaseKey(int64_t deadline_ms, absl::string_view job_id);
absl::string_view LeaseKeyJobId(absl::string_view key);

// by_time: creation order, for newest-first listing and retention.
std::string ByTimeKey(int64_t create_ms, absl::string_view job_id);
std::optional<std::pair<int64_t, std::string>> ParseByTimeKey(absl::string_view key);

// tombstones: when and why a job was removed ("deleted" or "expired").
std::string TombstoneValue(int64_t removed_ms, absl::string_view reason);
std::optional<std::pair<int64_t, std::string>> ParseTombstoneValue(absl::string_view value);

}  // namespace jobstream::storage
