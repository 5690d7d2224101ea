// Timetable: when a schedule fires — a cron expression in a time zone, or a fixed
// interval from a start time. Nominal fire times are whole seconds.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "jobstream/v1/schedules.pb.h"
#include "server/schedules/cron.h"

namespace jobstream::schedules {

class Timetable {
 public:
  // From a schedule's cron/time_zone or interval/start_time; INVALID_ARGUMENT names the
  // field. `created` anchors an interval without a start_time.
  static absl::StatusOr<Timetable> Of(const v1::Schedule& schedule, absl::Time created);

  // The first nominal fire time strictly after `after`; nullopt if none will come.
  std::optional<absl::Time> Next(absl::Time after) const;

 private:
  Timetable() = default;
  std::optional<CronExpression> cron_;
  absl::TimeZone zone_;
  absl::Duration interval_;
  absl::Time start_;
};

// Whether `name` is a time zone the server can load (IANA names such as "Europe/Berlin",
// or "UTC"); the error names the field.
absl::StatusOr<absl::TimeZone> LoadZone(const std::string& name);

// The delay of the fire at `nominal`, 0..jitter: fixed per schedule and fire time, so a
// retried fire waits as long as the first try did.
absl::Duration JitterOf(const std::string& schedule_id, absl::Time nominal, absl::Duration jitter);

}  // namespace jobstream::schedules
