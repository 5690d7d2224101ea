// Cron expressions against expected fire times, across time zones and both kinds of
// daylight-saving change, and against a minute-by-minute walk of a whole year.
#include "server/schedules/cron.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace jobstream::schedules {
namespace {

absl::TimeZone Zone(const std::string& name) {
  absl::TimeZone zone;
  EXPECT_TRUE(absl::LoadTimeZone(name, &zone)) << name;
  return zone;
}

absl::Time Utc(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << rfc3339 << ": " << err;
  return t;
}

std::string Show(std::optional<absl::Time> t) {
  return t ? absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *t, absl::UTCTimeZone()) : "never";
}

struct Case {
  const char* expression;
  const char* zone;
  const char* after;                  // UTC
  std::vector<const char*> expected;  // the next fires, in UTC
};

TEST(CronTest, FireTimesAcrossZonesAndDaylightSavingChanges) {
  const std::vector<Case> cases = {
      {"*/15 * * * *", "UTC", "2026-01-01T00:07:30Z",
       {"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"}},
      // Exactly on a fire time: the next one, never the same.
      {"*/15 * * * *", "UTC", "2026-01-01T00:15:00Z", {"2026-01-01T00:30:00Z"}},
      // Weekdays at 09:00 in New York: Friday, then Monday.
      {"0 9 * * MON-FRI", "America/New_York", "2026-12-04T13:59:00Z",
       {"2026-12-04T14:00:00Z", "2026-12-07T14:00:00Z"}},
      // Spring forward in New York (2026-03-08, 02:00 EST -> 03:00 EDT): 02:30 does not
      // exist, so it fires once at 03:00 EDT; the next day at 02:30 EDT.
      {"30 2 * * *", "America/New_York", "2026-03-08T05:00:00Z",
       {"2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
      // Every quarter of the skipped hour: one fire, at its end.
      {"*/15 2 * * *", "America/New_York", "2026-03-08T05:00:00Z",
       {"2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"}},
      // Every half hour through the gap: 01:30 EST, then 03:00 EDT, 03:30 EDT.
      {"*/30 * * * *", "America/New_York", "2026-03-08T06:15:00Z",
       {"2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"}},
      // Fall back (2026-11-01, 02:00 EDT -> 01:00 EST): 01:30 happens twice and fires
      // once, the first time; the next fire is the next day.
      {"30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z",
       {"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
      // Hourly follows real time through the repeated hour: 01:00 EDT, 01:00 EST, 02:00 EST.
      {"0 * * * *", "America/New_York", "2026-11-01T04:30:00Z",
       {"2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
      // London springs forward at 01:00 GMT: 01:30 fires at 02:00 BST (01:00Z).
      {"30 1 * * *", "Europe/London", "2026-03-28T12:00:00Z",
       {"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
      // Lord Howe moves by half an hour (2026-10-04, 02:00 +10:30 -> 02:30 +11:00).
      {"15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z",
       {"2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"}},
      // Half-hour offset, no daylight saving.
      {"0 9 * * *", "Asia/Kolkata", "2026-06-01T00:00:00Z", {"2026-06-01T03:30:00Z"}},
      // Both day fields restricted: the 13th or a Friday.
      {"0 0 13 * FRI", "UTC", "2026-12-01T00:00:00Z",
       {"2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z",
        "2026-12-18T00:00:00Z"}},
      // One starts with '*': both must match (odd days that are Mondays).
      {"0 0 */2 * 1", "UTC", "2026-12-01T00:00:00Z",
       {"2026-12-07T00:00:00Z", "2026-12-21T00:00:00Z", "2027-01-11T00:00:00Z"}},
      // Sunday as 7 and as 0, by name, and months by name.
      {"0 12 * jan,JUL 7", "UTC", "2026-12-31T00:00:00Z", {"2027-01-03T12:00:00Z"}},
      {"0 12 * 1,7 sun", "UTC", "2026-12-31T00:00:00Z", {"2027-01-03T12:00:00Z"}},
      {"5/20 3-5/2 * * *", "UTC", "2026-01-01T00:00:00Z",
       {"2026-01-01T03:05:00Z", "2026-01-01T03:25:00Z", "2026-01-01T03:45:00Z",
        "2026-01-01T05:05:00Z"}},
      // The 29th of February: the next leap year.
      {"0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z", {"2028-02-29T00:00:00Z"}},
      {"@hourly", "UTC", "2026-01-01T00:00:01Z", {"2026-01-01T01:00:00Z"}},
      {"@daily", "Europe/Berlin", "2026-07-01T00:00:00Z", {"2026-07-01T22:00:00Z"}},
      {"@weekly", "UTC", "2026-12-04T00:00:00Z", {"2026-12-06T00:00:00Z"}},
      {"@MONTHLY", "UTC", "2026-12-04T00:00:00Z", {"2027-01-01T00:00:00Z"}},
      {"@yearly", "UTC", "2026-12-04T00:00:00Z", {"2027-01-01T00:00:00Z"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.expression) + " in " + c.zone + " after " + c.after);
    absl::StatusOr<CronExpression> cron = CronExpression::Parse(c.expression);
    ASSERT_TRUE(cron.ok()) << cron.status();
    const absl::TimeZone zone = Zone(c.zone);
    absl::Time after = Utc(c.after);
    for (const char* expected : c.expected) {
      std::optional<absl::Time> next = cron->Next(after, zone);
      ASSERT_EQ(Show(next), expected);
      after = *next;
    }
  }
}

TEST(CronTest, AnExpressionThatNeverFiresHasNoNextTime) {
  absl::StatusOr<CronExpression> cron = CronExpression::Parse("0 0 30 2 *");
  ASSERT_TRUE(cron.ok()) << cron.status();
  EXPECT_EQ(Show(cron->Next(Utc("2026-01-01T00:00:00Z"), absl::UTCTimeZone())), "never");
}

// The reference: every minute of a year in real time, each fired when the rules say so
// (a matching local minute; in a repeated hour only its first pass unless the hour field
// starts with '*'; a gap's matching minutes once, at the gap's end).
std::vector<absl::Time> Walk(const CronExpression& cron, bool hour_star, const absl::TimeZone& zone,
                             absl::Time from, absl::Time to) {
  std::vector<absl::Time> fires;
  for (absl::Time t = from + absl::Minutes(1); t <= to; t += absl::Minutes(1)) {
    const absl::CivilMinute local = absl::ToCivilMinute(t, zone);
    bool fire = false;
    if (cron.Matches(local)) {
      const absl::TimeZone::TimeInfo info = zone.At(absl::CivilSecond(local));
      fire = info.kind != absl::TimeZone::TimeInfo::REPEATED || hour_star || t == info.pre;
    }
    // Clocks jumped forward just now: the minutes skipped fire here (once).
    const absl::CivilMinute before = absl::ToCivilMinute(t - absl::Minutes(1), zone);
    for (absl::CivilMinute m = before + 1; m < local && !fire; ++m) fire = cron.Matches(m);
    if (fire) fires.push_back(t);
  }
  return fires;
}

TEST(CronTest, NextAgreesWithAMinuteByMinuteWalkOfAYear) {
  const std::vector<std::pair<const char*, bool>> expressions = {
      {"*/20 * * * *", true}, {"30 1,2 * * *", false}, {"0 */3 * * *", true},
      {"45 2 * * 0", false},  {"0 0 1,15 * 1", false}};
  for (const char* name : {"America/New_York", "Europe/London", "Australia/Lord_Howe"}) {
    const absl::TimeZone zone = Zone(name);
    const absl::Time from = Utc("2026-01-01T00:00:00Z");
    const absl::Time to = Utc("2027-01-01T00:00:00Z");
    for (const auto& [expression, hour_star] : expressions) {
      SCOPED_TRACE(std::string(expression) + " in " + name);
      absl::StatusOr<CronExpression> cron = CronExpression::Parse(expression);
      ASSERT_TRUE(cron.ok()) << cron.status();
      std::vector<absl::Time> expected = Walk(*cron, hour_star, zone, from, to);
      ASSERT_GT(expected.size(), 20u);
      std::vector<absl::Time> got;
      for (std::optional<absl::Time> t = cron->Next(from, zone); t && *t <= to;
           t = cron->Next(*t, zone)) {
        got.push_back(*t);
      }
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(Show(got[i]), Show(expected[i])) << "fire " << i;
      }
    }
  }
}

TEST(CronTest, BadExpressionsAreRefusedNamingTheFieldAndWhy) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"", "needs 5 fields"},
      {"* * * *", "needs 5 fields (minute hour day-of-month month day-of-week), not 4"},
      {"* * * * * *", "not 6"},
      {"60 * * * *", "cron minute field \"60\": 60 is out of range 0-59"},
      {"* 24 * * *", "cron hour field \"24\": 24 is out of range 0-23"},
      {"* * 0 * *", "cron day-of-month field \"0\": 0 is out of range 1-31"},
      {"* * * 13 *", "cron month field \"13\": 13 is out of range 1-12"},
      {"* * * * 8", "cron day-of-week field \"8\": 8 is out of range 0-7"},
      {"* * * * FRI-MON", "the range FRI-MON runs backwards"},
      {"*/0 * * * *", "the step \"0\" must be 1 to 60"},
      {"*/61 * * * *", "the step \"61\" must be 1 to 60"},
      {"1,,2 * * * *", "an empty list element"},
      {"1-2-3 * * * *", "more than one '-'"},
      {"*/2/3 * * * *", "more than one '/'"},
      {"a * * * *", "\"a\" is not a number"},
      {"* * * foo *", "neither a number nor a name like JAN"},
      {"-1 * * * *", "a value is missing"},
      {"99999999999 * * * *", "is not a number"},
      {"@reboot", "the macros are @yearly"},
      {"@every 5m", "the macros are"},
  };
  for (const auto& [expression, message] : cases) {
    absl::StatusOr<CronExpression> cron = CronExpression::Parse(expression);
    ASSERT_FALSE(cron.ok()) << expression;
    EXPECT_EQ(cron.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(cron.status().message().find(message), std::string::npos)
        << expression << ": " << cron.status().message();
  }
  EXPECT_FALSE(CronExpression::Parse(std::string(300, '*')).ok());
}

}  // namespace
}  // namespace jobstream::schedules
