#include "server/schedules/timetable.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::schedules {
namespace {

constexpr absl::Duration kMaxInterval = absl::Hours(366 * 24);

}  // namespace

absl::StatusOr<absl::TimeZone> LoadZone(const std::string& name) {
  if (name.empty()) return absl::UTCTimeZone();
  // IANA names are letters, digits and "/_+-"; refusing the rest (and "..") keeps the
  // name from reaching outside the zone database.
  bool plain = name.size() <= 64 && name.find("..") == std::string::npos && name[0] != '/';
  for (char c : name) {
    plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' ||
                      c == '+' || c == '-');
  }
  absl::TimeZone zone;
  if (!plain || name == "localtime" || !absl::LoadTimeZone(name, &zone)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule.time_zone \"", name,
        "\" is not a time zone this server knows: give an IANA name such as "
        "\"Europe/Berlin\" or \"UTC\""));
  }
  return zone;
}

absl::StatusOr<Timetable> Timetable::Of(const v1::Schedule& schedule, absl::Time created) {
  const bool has_interval = schedule.has_interval();
  if (schedule.cron().empty() == !has_interval) {
    return absl::InvalidArgumentError(
        "a schedule needs exactly one of schedule.cron and schedule.interval");
  }
  Timetable table;
  if (!has_interval) {
    if (schedule.has_start_time()) {
      return absl::InvalidArgumentError(
          "schedule.start_time is for an interval; a cron schedule fires on its expression");
    }
    absl::StatusOr<CronExpression> cron = CronExpression::Parse(schedule.cron());
    if (!cron.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("schedule.cron: ", cron.status().message()));
    }
    absl::StatusOr<absl::TimeZone> zone = LoadZone(schedule.time_zone());
    if (!zone.ok()) return zone.status();
    table.cron_ = *std::move(cron);
    table.zone_ = *zone;
    if (!table.Next(created)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schedule.cron \"", schedule.cron(), "\" never fires (no date matches it)"));
    }
    return table;
  }
  if (!schedule.time_zone().empty()) {
    return absl::InvalidArgumentError(
        "schedule.time_zone is for a cron expression; an interval runs in real time");
  }
  const auto& interval = schedule.interval();
  if (interval.nanos() != 0 || interval.seconds() < 1 ||
      absl::Seconds(interval.seconds()) > kMaxInterval) {
    return absl::InvalidArgumentError(
        "schedule.interval must be whole seconds from 1s to 366 days");
  }
  table.interval_ = absl::Seconds(interval.seconds());
  if (schedule.has_start_time()) {
    const auto& start = schedule.start_time();
    if (start.nanos() != 0 || start.seconds() < 0 ||
        absl::FromUnixSeconds(start.seconds()) > created + kMaxInterval) {
      return absl::InvalidArgumentError(
          "schedule.start_time must be whole seconds, after 1970 and at most 366 days ahead");
    }
    table.start_ = v1::ToTime(start);
  } else {
    table.start_ = absl::FromUnixSeconds(absl::ToUnixSeconds(created)) + table.interval_;
  }
  return table;
}

std::optional<absl::Time> Timetable::Next(absl::Time after) const {
  if (cron_) return cron_->Next(after, zone_);
  if (after < start_) return start_;
  absl::Duration rest;
  const int64_t k = absl::IDivDuration(after - start_, interval_, &rest) + 1;
  return start_ + k * interval_;
}

absl::Duration JitterOf(const std::string& schedule_id, absl::Time nominal,
                        absl::Duration jitter) {
  if (jitter <= absl::ZeroDuration()) return absl::ZeroDuration();
  // FNV-1a: the same on every server and across restarts (absl::Hash is seeded per process).
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](unsigned char byte) { h = (h ^ byte) * 1099511628211ull; };
  for (char c : schedule_id) mix(static_cast<unsigned char>(c));
  const int64_t seconds = absl::ToUnixSeconds(nominal);
  for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(seconds >> (8 * i)));
  const int64_t ms = absl::ToInt64Milliseconds(jitter);
  return ms > 0 ? absl::Milliseconds(static_cast<int64_t>(h % static_cast<uint64_t>(ms + 1)))
                : absl::ZeroDuration();
}

}  // namespace jobstream::schedules
