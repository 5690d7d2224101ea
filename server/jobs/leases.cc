#include "server/jobs/leases.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "server/jobs/ids.h"

namespace jobstream::jobs {
namespace {
constexpr size_t kLeaseSuffix = 16;  // 80 random bits
}  // namespace

std::string NewLeaseId(absl::string_view job_id) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(job_id);
  id.push_back('-');
  uint64_t bits = rng();
  uint64_t more = rng();
  for (size_t i = 0; i < kLeaseSuffix; ++i) {
    uint64_t& source = i < 12 ? bits : more;
    id.push_back(kIdAlphabet[source & 31]);
    source >>= 5;
  }
  return id;
}

absl::StatusOr<std::string> LeaseJobId(absl::string_view lease_id) {
  const absl::Status malformed = absl::InvalidArgumentError(absl::StrCat(
      "lease_id \"", lease_id.substr(0, 64),
      "\" is not a lease id; use the lease_id LeaseJob returned"));
  if (lease_id.size() != kJobIdLength + 1 + kLeaseSuffix || lease_id[kJobIdLength] != '-') {
    return malformed;
  }
  absl::string_view job_id = lease_id.substr(0, kJobIdLength);
  if (!ValidateJobId(job_id).ok()) return malformed;
  for (char c : lease_id.substr(kJobIdLength + 1)) {
    if (absl::string_view(kIdAlphabet).find(c) == absl::string_view::npos) return malformed;
  }
  return std::string(job_id);
}

void DeadlineIndex::Set(const std::string& job_id, int64_t deadline_ms) {
  Clear(job_id);
  by_job_[job_id] = deadline_ms;
  by_time_.emplace(deadline_ms, job_id);
}

void DeadlineIndex::Clear(const std::string& job_id) {
  auto it = by_job_.find(job_id);
  if (it == by_job_.end()) return;
  by_time_.erase({it->second, job_id});
  by_job_.erase(it);
}

std::vector<std::string> DeadlineIndex::TakeDue(int64_t now_ms) {
  std::vector<std::string> due;
  while (!by_time_.empty() && by_time_.begin()->first <= now_ms) {
    due.push_back(by_time_.begin()->second);
    by_job_.erase(by_time_.begin()->second);
    by_time_.erase(by_time_.begin());
  }
  return due;
}

std::optional<int64_t> DeadlineIndex::Next() const {
  if (by_time_.empty()) return std::nullopt;
  return by_time_.begin()->first;
}

void WorkerRegistry::Seen(const std::vector<std::string>& types, const std::string& worker_id,
                          absl::Time now) {
  for (const std::string& type : types) seen_[type][worker_id] = now;
}

int WorkerRegistry::Polling(absl::string_view type) const {
  int n = 0;
  for (const auto& waiter : waiters_) {
    for (const std::string& t : waiter->types) n += t == type;
  }
  return n;
}

int WorkerRegistry::Workers(absl::string_view type, absl::Time since) const {
  auto it = seen_.find(type);
  if (it == seen_.end()) return 0;
  int n = 0;
  for (const auto& [worker, when] : it->second) n += when >= since;
  return n;
}

void WorkerRegistry::Prune(absl::Time since) {
  for (auto type = seen_.begin(); type != seen_.end();) {
    absl::erase_if(type->second, [since](const auto& entry) { return entry.second < since; });
    if (type->second.empty()) {
      seen_.erase(type++);
    } else {
      ++type;
    }
  }
}

}  // namespace jobstream::jobs
