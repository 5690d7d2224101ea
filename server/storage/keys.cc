#include "absl/strings/string_view.h"
#include "server/storage/keys.h"

#include "absl/strings/str_cat.h"

namespace jobstream::storage {

void PutBigEndian32(std::string* dst, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) dst->push_back(static_cast<char>(v >> shift));
}

void PutBigEndian64(std::string* dst, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) dst->push_back(static_cast<char>(v >> shift));
}

uint32_t GetBigEndian32(absl::string_view src) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(src[i]);
  return v;
}

uint64_t GetBigEndian64(absl::string_view src) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(src[i]);
  return v;
}

std::string EventKey(absl::string_view job_id, int64_t sequence) {
  std::string key(job_id);
  PutBigEndian64(&key, static_cast<uint64_t>(sequence));
  return key;
}

int64_t EventKeySequence(absl::string_view key) {
  return static_cast<int64_t>(GetBigEndian64(key.substr(key.size() - 8)));
}

namespace {
// Flipping the sign bit maps int32 order onto uint32 order; inverting it puts the
// highest priority first.
uint32_t InvertedPriority(int32_t priority) {
  return ~(static_cast<uint32_t>(priority) ^ 0x80000000u);
}
int32_t PriorityFromInverted(uint32_t v) { return static_cast<int32_t>(~v ^ 0x80000000u); }
}  // namespace

std::string QueuePrefix(absl::string_view type) {
  std::string key(type);
  key.push_back('\0');  // type names never hold NUL, so this ends the prefix cleanly
  return key;
}

std::string QueueKey(absl::string_view type, absl::string_view tenant, int32_t priority,
                     int64_t ready_ms, absl::string_view job_id,
                     absl::string_view concurrency_key) {
  std::string key(type);
  if (!tenant.empty()) {  // type names never hold 0x01 either; no tenant: the old form
    key.push_back('\x01');
    key.append(tenant.data(), tenant.size());
  }
  if (!concurrency_key.empty()) {  // printable, like tenants: never 0x00..0x02
    key.push_back('\x02');
    key.append(concurrency_key.data(), concurrency_key.size());
  }
  key.push_back('\0');
  PutBigEndian32(&key, InvertedPriority(priority));
  PutBigEndian64(&key, static_cast<uint64_t>(ready_ms));
  key.append(job_id.data(), job_id.size());
  return key;
}

std::optional<QueueEntry> ParseQueueKey(absl::string_view key) {
  size_t nul = key.find('\0');
  if (nul == absl::string_view::npos || key.size() < nul + 1 + 12) return std::nullopt;
  absl::string_view rest = key.substr(nul + 1);
  absl::string_view lane = key.substr(0, nul);
  absl::string_view tenant, concurrency_key;
  if (size_t sep = lane.find('\x02'); sep != absl::string_view::npos) {
    concurrency_key = lane.substr(sep + 1);
    lane = lane.substr(0, sep);
  }
  if (size_t sep = lane.find('\x01'); sep != absl::string_view::npos) {
    tenant = lane.substr(sep + 1);
    lane = lane.substr(0, sep);
  }
  return QueueEntry{std::string(lane),
                    std::string(tenant),
                    PriorityFromInverted(GetBigEndian32(rest)),
                    static_cast<int64_t>(GetBigEndian64(rest.substr(4))),
                    std::string(rest.substr(12)),
                    std::string(concurrency_key)};
}

std::string ByTimeKey(int64_t create_ms, absl::string_view job_id) {
  std::string key;
  PutBigEndian64(&key, static_cast<uint64_t>(create_ms));
  key.append(job_id.data(), job_id.size());
  return key;
}

std::optional<std::pair<int64_t, std::string>> ParseByTimeKey(absl::string_view key) {
  if (key.size() <= 8) return std::nullopt;
  return std::make_pair(static_cast<int64_t>(GetBigEndian64(key)),
                        std::string(key.substr(8)));
}

std::string ByStatePrefix(int state) { return std::string(1, static_cast<char>(state)); }

std::string ByTypeStatePrefix(absl::string_view type, int state) {
  std::string key = QueuePrefix(type);
  key.push_back(static_cast<char>(state));
  return key;
}

std::string ByStateKey(int state, int64_t create_ms, absl::string_view job_id) {
  return ByStatePrefix(state) + ByTimeKey(create_ms, job_id);
}

std::string ByTypeStateKey(absl::string_view type, int state, int64_t create_ms,
                           absl::string_view job_id) {
  return ByTypeStatePrefix(type, state) + ByTimeKey(create_ms, job_id);
}

std::string TombstoneValue(int64_t removed_ms, absl::string_view reason,
                           absl::string_view tenant) {
  std::string value;
  PutBigEndian64(&value, static_cast<uint64_t>(removed_ms));
  value.append(reason.data(), reason.size());
  if (!tenant.empty()) {
    value.push_back('\0');
    value.append(tenant.data(), tenant.size());
  }
  return value;
}

std::optional<Tombstone> ParseTombstoneValue(absl::string_view value) {
  if (value.size() < 8) return std::nullopt;
  absl::string_view rest = value.substr(8);
  absl::string_view tenant;
  if (size_t nul = rest.find('\0'); nul != absl::string_view::npos) {
    tenant = rest.substr(nul + 1);
    rest = rest.substr(0, nul);
  }
  return Tombstone{static_cast<int64_t>(GetBigEndian64(value)), std::string(rest),
                   std::string(tenant)};
}

std::string RequestKey(absl::string_view tenant, absl::string_view request_id) {
  if (tenant.empty()) return std::string(request_id);  // request ids never hold NUL
  return absl::StrCat(tenant, absl::string_view("\0", 1), request_id);
}

std::string UniqueKey(absl::string_view tenant, absl::string_view unique_key) {
  return absl::StrCat(absl::string_view("\x01", 1), tenant, absl::string_view("\0", 1),
                      unique_key);
}

std::string BatchRequestKey(absl::string_view tenant, absl::string_view request_id) {
  return absl::StrCat(absl::string_view("\x02", 1), tenant, absl::string_view("\0", 1),
                      request_id);
}

std::string BatchChildrenKey(absl::string_view parent_id) {
  return absl::StrCat(absl::string_view("\x03", 1), parent_id);
}

std::string ArtifactRecordKey(absl::string_view job_id, absl::string_view name) {
  std::string key(job_id);
  key.push_back('n');
  key.append(name.data(), name.size());
  return key;
}

std::string ArtifactChunkKey(absl::string_view job_id, uint64_t upload_id, uint32_t chunk) {
  std::string key(job_id);
  key.push_back('u');
  PutBigEndian64(&key, upload_id);
  PutBigEndian32(&key, chunk);
  return key;
}

std::pair<std::string, std::string> ArtifactUploadRange(absl::string_view job_id,
                                                        uint64_t upload_id) {
  std::string begin(job_id);
  begin.push_back('u');
  PutBigEndian64(&begin, upload_id);
  std::string end = begin;
  end.push_back('\xff');  // past every be32 chunk suffix
  end.append(4, '\xff');
  return {std::move(begin), std::move(end)};
}

std::pair<std::string, std::string> JobArtifactsRange(absl::string_view job_id) {
  std::string end(job_id);
  end.push_back('\xff');  // past 'n' and 'u'
  return {std::string(job_id), std::move(end)};
}

std::string UploadKey(uint64_t upload_id) {
  std::string key;
  PutBigEndian64(&key, upload_id);
  return key;
}

std::string WebhookQueueKey(int64_t due_ms, absl::string_view job_id, int64_t sequence) {
  std::string key;
  PutBigEndian64(&key, static_cast<uint64_t>(due_ms));
  key.append(job_id.data(), job_id.size());
  PutBigEndian64(&key, static_cast<uint64_t>(sequence));
  return key;
}

std::optional<WebhookQueueEntry> ParseWebhookQueueKey(absl::string_view key) {
  if (key.size() <= 16) return std::nullopt;
  return WebhookQueueEntry{static_cast<int64_t>(GetBigEndian64(key)),
                           std::string(key.substr(8, key.size() - 16)),
                           static_cast<int64_t>(GetBigEndian64(key.substr(key.size() - 8)))};
}

}  // namespace jobstream::storage
