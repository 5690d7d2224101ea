#include "server/storage/disk_space.h"

#include <sys/statvfs.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace jobstream::storage {

int64_t DiskSpace::FreeBytes() {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  if (now_ms - checked_ms_.load(std::memory_order_relaxed) < 100) {
    return free_.load(std::memory_order_relaxed);
  }
  struct statvfs fs;
  int64_t free = -1;  // unknown: admit
  if (statvfs(dir_.c_str(), &fs) == 0) {
    free = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
  }
  free_.store(free, std::memory_order_relaxed);
  checked_ms_.store(now_ms, std::memory_order_relaxed);
  return free;
}

absl::Status DiskSpace::Admit(int64_t bytes) {
  if (floor_ == 0) return absl::OkStatus();
  const int64_t free = FreeBytes();
  if (free < 0 || free - bytes >= floor_) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the data dir's disk has ", free / 1024, " KiB free, under the ", floor_ / 1024,
      " KiB kept for jobs already in (--min_free_disk_bytes); no new work until there is "
      "room"));
}

}  // namespace jobstream::storage
