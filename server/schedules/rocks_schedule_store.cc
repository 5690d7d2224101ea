// Schedules in RocksDB: the record under tenant 0x00 id, and an index entry under its
// wake time, written together in one synced batch. One server owns the data dir, so a
// mutex is enough to make Update's version check and write one step: one of 64 by the
// key's hash, so writes of different schedules (10,000 firing at one minute) go on side
// by side and RocksDB syncs them together.
#include <array>
#include <functional>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "server/schedules/schedule_record.h"
#include "server/schedules/schedule_store.h"
#include "server/storage/job_store.h"
#include "server/storage/keys.h"

namespace jobstream::schedules {
namespace {

using storage::Cf;

std::string Key(const std::string& tenant, const std::string& id) {
  return absl::StrCat(tenant, absl::string_view("\0", 1), id);
}

std::string DueKey(int64_t wake_ms, const std::string& key) {
  std::string out;
  storage::PutBigEndian64(&out, static_cast<uint64_t>(wake_ms));
  out += key;
  return out;
}

class RocksScheduleStore : public ScheduleStore {
 public:
  explicit RocksScheduleStore(storage::JobStore* store) : store_(store) {}

  absl::Status Create(StoredSchedule& s) override {
    const std::string key = Key(s.schedule.tenant(), s.schedule.id());
    std::lock_guard<std::mutex> lock(MutexOf(key));
    auto existing = Read(key);
    if (existing.ok()) {
      return absl::AlreadyExistsError(
          absl::StrCat("schedule \"", s.schedule.id(), "\" already exists"));
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
    s.version = 1;
    return Write(key, s, std::nullopt);
  }

  absl::StatusOr<StoredSchedule> Get(const std::string& tenant,
                                     const std::string& id) const override {
    auto s = Read(Key(tenant, id));
    if (absl::IsNotFound(s.status())) return NotFound(id);
    return s;
  }

  absl::StatusOr<std::vector<StoredSchedule>> List(const auth::Scope& scope,
                                                   const std::string& after_tenant,
                                                   const std::string& after_id,
                                                   int limit) const override {
    std::vector<StoredSchedule> out;
    absl::Status failed;
    const bool paging = !after_tenant.empty() || !after_id.empty();
    const std::string after = Key(after_tenant, after_id);
    const std::string start = paging ? after : (scope.all_tenants ? "" : Key(scope.tenant, ""));
    absl::Status scanned = store_->Scan(Cf::kSchedules, start, false, [&](auto key, auto value) {
      if (paging && key == after) return true;
      auto s = DecodeSchedule(value);
      if (!s.ok()) {
        failed = s.status();
        return false;
      }
      if (!scope.Sees(s->schedule.tenant())) return scope.all_tenants;
      out.push_back(*std::move(s));
      return static_cast<int>(out.size()) < limit;
    });
    if (!failed.ok()) return failed;
    if (!scanned.ok()) return scanned;
    return out;
  }

  absl::Status Update(StoredSchedule& s) override {
    const std::string key = Key(s.schedule.tenant(), s.schedule.id());
    std::lock_guard<std::mutex> lock(MutexOf(key));
    auto stored = Read(key);
    if (absl::IsNotFound(stored.status())) return NotFound(s.schedule.id());
    if (!stored.ok()) return stored.status();
    if (stored->version != s.version) {
      return absl::AbortedError(
          absl::StrCat("schedule \"", s.schedule.id(), "\" changed meanwhile"));
    }
    ++s.version;
    return Write(key, s, WakeMs(*stored));
  }

  absl::Status Delete(const std::string& tenant, const std::string& id) override {
    const std::string key = Key(tenant, id);
    std::lock_guard<std::mutex> lock(MutexOf(key));
    auto stored = Read(key);
    if (absl::IsNotFound(stored.status())) return NotFound(id);
    if (!stored.ok()) return stored.status();
    storage::Batch batch;
    batch.Delete(Cf::kSchedules, key);
    if (WakeMs(*stored) != 0) batch.Delete(Cf::kScheduleDue, DueKey(WakeMs(*stored), key));
    return store_->Write(batch, /*sync=*/true);
  }

  absl::StatusOr<std::vector<StoredSchedule>> Due(absl::Time now, int limit) const override {
    std::vector<std::string> keys;
    const int64_t now_ms = absl::ToUnixMillis(now);
    absl::Status scanned = store_->Scan(Cf::kScheduleDue, "", false, [&](auto key, auto) {
      if (key.size() < 8 || static_cast<int64_t>(storage::GetBigEndian64(key)) > now_ms) {
        return false;
      }
      keys.emplace_back(key.substr(8));
      return static_cast<int>(keys.size()) < limit;
    });
    if (!scanned.ok()) return scanned;
    std::vector<StoredSchedule> out;
    for (const std::string& key : keys) {
      auto s = Read(key);
      if (absl::IsNotFound(s.status())) continue;  // deleted since
      if (!s.ok()) return s.status();
      out.push_back(*std::move(s));
    }
    return out;
  }

 private:
  static absl::Status NotFound(const std::string& id) {
    return absl::NotFoundError(absl::StrCat("no schedule \"", id, "\""));
  }

  absl::StatusOr<StoredSchedule> Read(const std::string& key) const {
    std::string value;
    absl::Status found = absl::NotFoundError("");
    absl::Status scanned = store_->Scan(Cf::kSchedules, key, false, [&](auto k, auto v) {
      if (k == key) {
        value.assign(v.data(), v.size());
        found = absl::OkStatus();
      }
      return false;
    });
    if (!scanned.ok()) return scanned;
    if (!found.ok()) return found;
    return DecodeSchedule(value);
  }

  absl::Status Write(const std::string& key, const StoredSchedule& s,
                     std::optional<int64_t> old_wake_ms) {
    storage::Batch batch;
    batch.Put(Cf::kSchedules, key, EncodeSchedule(s));
    if (old_wake_ms && *old_wake_ms != 0) {
      batch.Delete(Cf::kScheduleDue, DueKey(*old_wake_ms, key));
    }
    if (WakeMs(s) != 0) batch.Put(Cf::kScheduleDue, DueKey(WakeMs(s), key), "");
    return store_->Write(batch, /*sync=*/true);
  }

  std::mutex& MutexOf(const std::string& key) {
    return mutexes_[std::hash<std::string>()(key) % mutexes_.size()];
  }

  storage::JobStore* const store_;
  std::array<std::mutex, 64> mutexes_;
};

}  // namespace

std::unique_ptr<ScheduleStore> NewRocksScheduleStore(storage::JobStore* store) {
  return std::make_unique<RocksScheduleStore>(store);
}

}  // namespace jobstream::schedules
