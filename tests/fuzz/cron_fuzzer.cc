// Cron expressions of any bytes: Parse either refuses them or gives an expression whose
// next fire times, in zones with and without daylight saving, only move forward.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/time/time.h"
#include "server/schedules/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const absl::TimeZone* zones = [] {
    static absl::TimeZone z[3];
    z[0] = absl::UTCTimeZone();
    absl::LoadTimeZone("America/New_York", &z[1]);
    absl::LoadTimeZone("Australia/Lord_Howe", &z[2]);
    return z;
  }();
  absl::StatusOr<jobstream::schedules::CronExpression> cron =
      jobstream::schedules::CronExpression::Parse(
          absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!cron.ok()) return 0;
  // Around the 2026 changes of the clocks in both zones.
  for (int z = 0; z < 3; ++z) {
    absl::Time t = absl::FromUnixSeconds(1772928000);  // 2026-03-08T00:00:00Z
    for (int i = 0; i < 8; ++i) {
      std::optional<absl::Time> next = cron->Next(t, zones[z]);
      if (!next) break;
      if (*next <= t) abort();
      t = *next;
    }
  }
  return 0;
}
