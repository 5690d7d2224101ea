// CronExpression: the five-field cron expressions of Vixie cron (minute hour day-of-month
// month day-of-week), evaluated in an IANA time zone.
//
// Each field is a comma-separated list of `*`, `N`, `N-M`, each optionally `/STEP`
// (`N/STEP` runs from N to the field's end). Months and weekdays may be named (JAN, MON;
// any case); weekday 0 and 7 are both Sunday. As in cron, when both day fields are
// restricted (neither starts with `*`) a day matches if either does. The macros @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly stand for their expansions.
//
// Daylight saving time, the way cron users expect:
// - a local time the clocks skip (02:30 on a spring-forward night) fires once, at the
//   first valid instant after the gap (03:00);
// - a local time the clocks repeat (01:30 on a fall-back night) fires once, at its first
//   occurrence — unless the hour field starts with `*`: a schedule that repeats through
//   the day follows real time, so an hourly or every-15-minutes schedule keeps firing
//   through the repeated hour.
#pragma once

#include <bitset>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace jobstream::schedules {

class CronExpression {
 public:
  // INVALID_ARGUMENT names the field and what is wrong with it.
  static absl::StatusOr<CronExpression> Parse(absl::string_view text);

  // The first fire time strictly after `after`, or nullopt if there is none within
  // the next nine years (e.g. "0 0 30 2 *").
  std::optional<absl::Time> Next(absl::Time after, const absl::TimeZone& zone) const;

  // Whether the expression fires on this civil minute (ignoring time zones).
  bool Matches(absl::CivilMinute minute) const;

 private:
  CronExpression() = default;
  bool DayMatches(absl::CivilDay day) const;
  // The first civil minute at or after `from` that matches, within the search horizon.
  std::optional<absl::CivilMinute> FirstMatch(absl::CivilMinute from) const;
  std::optional<absl::Time> NextNearTransition(absl::Time after, const absl::TimeZone& zone) const;

  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;      // 1..31
  std::bitset<13> months_;    // 1..12
  std::bitset<7> weekdays_;   // 0 = Sunday
  bool day_star_ = false;     // the day-of-month field starts with '*'
  bool weekday_star_ = false;
  bool hour_star_ = false;
};

}  // namespace jobstream::schedules
