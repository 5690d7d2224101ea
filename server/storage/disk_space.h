// DiskSpace: how much room the data dir's filesystem has left, and whether that is enough
// to take on new work. Below the floor, Submit and artifact uploads are refused
// (RESOURCE_EXHAUSTED) while jobs already in keep running and every read and watch keeps
// working; once space returns, new work is taken again, without a restart. A write that
// fails anyway (something else filled the disk at once) is the store's sticky failure.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace jobstream::storage {

class DiskSpace {
 public:
  // `floor_bytes` 0: never refuse.
  DiskSpace(std::string dir, int64_t floor_bytes) : dir_(std::move(dir)), floor_(floor_bytes) {}

  // OK, or RESOURCE_EXHAUSTED naming the free space and the flag, for work that would add
  // `bytes` (the filesystem is asked at most every 100 ms).
  absl::Status Admit(int64_t bytes = 0);

  // Free bytes for unprivileged writers (-1: unknown), as of at most 100 ms ago.
  int64_t FreeBytes();
  int64_t floor_bytes() const { return floor_; }

 private:

  const std::string dir_;
  const int64_t floor_;
  std::atomic<int64_t> free_{-1};
  std::atomic<int64_t> checked_ms_{0};
};

}  // namespace jobstream::storage
