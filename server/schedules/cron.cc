#include "server/schedules/cron.h"

#include <array>
#include <cctype>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace jobstream::schedules {
namespace {

constexpr size_t kMaxLength = 256;
// A zone's UTC offset lies within -12..+14 hours, so two civil minutes more than 26 hours
// apart are in the same order as their instants, whatever happened to the clocks between.
constexpr int kMarginMinutes = 26 * 60;
// The longest wait between fires: "0 0 29 2 *" across 2100, which is not a leap year.
constexpr int kHorizonDays = 9 * 366;

struct Field {
  const char* name;
  int lo;
  int hi;
  // Names for lo, lo + 1, …, or empty.
  std::vector<const char*> names;
};

const Field kMinute{"minute", 0, 59, {}};
const Field kHour{"hour", 0, 23, {}};
const Field kDay{"day-of-month", 1, 31, {}};
const Field kMonth{"month", 1, 12,
                   {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                    "dec"}};
// 7 is Sunday too (folded onto 0 after parsing).
const Field kWeekday{"day-of-week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}};

absl::Status FieldError(const Field& field, absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("cron ", field.name, " field \"", text, "\": ", why));
}

absl::StatusOr<int> ParseValue(const Field& field, absl::string_view whole, absl::string_view v) {
  if (v.empty()) return FieldError(field, whole, "a value is missing");
  if (std::isdigit(static_cast<unsigned char>(v[0]))) {
    int n = 0;
    if (v.size() > 3 || !absl::SimpleAtoi(v, &n)) {
      return FieldError(field, whole, absl::StrCat("\"", v, "\" is not a number"));
    }
    if (n < field.lo || n > field.hi) {
      return FieldError(field, whole,
                        absl::StrCat(n, " is out of range ", field.lo, "-", field.hi));
    }
    return n;
  }
  const std::string lower = absl::AsciiStrToLower(v);
  for (size_t i = 0; i < field.names.size(); ++i) {
    if (lower == field.names[i]) return field.lo + static_cast<int>(i);
  }
  return FieldError(field, whole,
                    field.names.empty()
                        ? absl::StrCat("\"", v, "\" is not a number")
                        : absl::StrCat("\"", v, "\" is neither a number nor a name like ",
                                       absl::AsciiStrToUpper(field.names[0])));
}

// Sets the bits `text` selects; returns whether it starts with '*'.
absl::StatusOr<bool> ParseField(const Field& field, absl::string_view text,
                                std::bitset<64>* bits) {
  for (absl::string_view element : absl::StrSplit(text, ',')) {
    if (element.empty()) return FieldError(field, text, "an empty list element");
    std::vector<absl::string_view> parts = absl::StrSplit(element, '/');
    if (parts.size() > 2) return FieldError(field, text, "more than one '/' in an element");
    int step = 1;
    if (parts.size() == 2) {
      const int span = field.hi - field.lo + 1;
      if (parts[1].size() > 3 || !absl::SimpleAtoi(parts[1], &step) || step < 1 ||
          step > span) {
        return FieldError(field, text,
                          absl::StrCat("the step \"", parts[1], "\" must be 1 to ", span));
      }
    }
    int first = field.lo;
    int last = field.hi;
    const absl::string_view base = parts[0];
    if (base != "*") {
      std::vector<absl::string_view> range = absl::StrSplit(base, '-');
      if (range.size() > 2) return FieldError(field, text, "more than one '-' in an element");
      absl::StatusOr<int> a = ParseValue(field, text, range[0]);
      if (!a.ok()) return a.status();
      first = *a;
      if (range.size() == 2) {
        absl::StatusOr<int> b = ParseValue(field, text, range[1]);
        if (!b.ok()) return b.status();
        last = *b;
        if (last < first) {
          return FieldError(field, text,
                            absl::StrCat("the range ", base, " runs backwards"));
        }
      } else if (parts.size() == 1) {
        last = first;  // a single value; "N/STEP" runs to the field's end
      }
    }
    for (int v = first; v <= last; v += step) bits->set(v);
  }
  return !text.empty() && text[0] == '*';
}

template <size_t N>
std::bitset<N> Narrow(const std::bitset<64>& bits) {
  std::bitset<N> out;
  for (size_t i = 0; i < N; ++i) out[i] = bits[i];
  return out;
}

absl::string_view Expand(absl::string_view text) {
  static constexpr std::array<std::pair<absl::string_view, absl::string_view>, 7> kMacros = {{
      {"@yearly", "0 0 1 1 *"},
      {"@annually", "0 0 1 1 *"},
      {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"},
      {"@daily", "0 0 * * *"},
      {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"},
  }};
  for (const auto& [name, expansion] : kMacros) {
    if (text == name) return expansion;
  }
  return text;
}

}  // namespace

absl::StatusOr<CronExpression> CronExpression::Parse(absl::string_view text) {
  if (text.size() > kMaxLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron expression is longer than ", kMaxLength, " characters"));
  }
  text = absl::StripAsciiWhitespace(text);
  if (!text.empty() && text[0] == '@') {
    const std::string lower = absl::AsciiStrToLower(text);
    const absl::string_view expanded = Expand(lower);
    if (expanded == lower) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cron expression \"", text,
          "\": the macros are @yearly, @annually, @monthly, @weekly, @daily, @midnight and "
          "@hourly"));
    }
    text = expanded;  // static storage
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cron expression \"", text,
        "\" needs 5 fields (minute hour day-of-month month day-of-week), not ", fields.size()));
  }
  CronExpression cron;
  const std::array<const Field*, 5> order = {&kMinute, &kHour, &kDay, &kMonth, &kWeekday};
  std::array<bool, 5> star{};
  std::array<std::bitset<64>, 5> sets;
  for (size_t i = 0; i < 5; ++i) {
    absl::StatusOr<bool> s = ParseField(*order[i], fields[i], &sets[i]);
    if (!s.ok()) return s.status();
    star[i] = *s;
  }
  if (sets[4][7]) sets[4].set(0);
  cron.minutes_ = Narrow<60>(sets[0]);
  cron.hours_ = Narrow<24>(sets[1]);
  cron.days_ = Narrow<32>(sets[2]);
  cron.months_ = Narrow<13>(sets[3]);
  cron.weekdays_ = Narrow<7>(sets[4]);
  cron.hour_star_ = star[1];
  cron.day_star_ = star[2];
  cron.weekday_star_ = star[4];
  return cron;
}

bool CronExpression::DayMatches(absl::CivilDay day) const {
  if (!months_[day.month()]) return false;
  const bool dom = days_[day.day()];
  // absl's weekdays run Monday = 0 .. Sunday = 6; cron's Sunday = 0 .. Saturday = 6.
  const bool dow = weekdays_[(static_cast<int>(absl::GetWeekday(day)) + 1) % 7];
  if (day_star_ || weekday_star_) return dom && dow;
  return dom || dow;
}

bool CronExpression::Matches(absl::CivilMinute minute) const {
  return DayMatches(absl::CivilDay(minute)) && hours_[minute.hour()] && minutes_[minute.minute()];
}

std::optional<absl::CivilMinute> CronExpression::FirstMatch(absl::CivilMinute from) const {
  const absl::CivilDay first(from);
  for (absl::CivilDay day = first; day - first <= kHorizonDays; ++day) {
    if (!months_[day.month()]) {
      day = absl::CivilDay(absl::CivilMonth(day) + 1) - 1;  // its last day; ++ moves on
      continue;
    }
    if (!DayMatches(day)) continue;
    const bool today = day == first;
    for (int h = today ? from.hour() : 0; h < 24; ++h) {
      if (!hours_[h]) continue;
      for (int m = today && h == from.hour() ? from.minute() : 0; m < 60; ++m) {
        if (minutes_[m]) return absl::CivilMinute(day.year(), day.month(), day.day(), h, m);
      }
    }
  }
  return std::nullopt;
}

std::optional<absl::Time> CronExpression::Next(absl::Time after,
                                               const absl::TimeZone& zone) const {
  std::optional<absl::CivilMinute> c = FirstMatch(absl::ToCivilMinute(after, zone) + 1);
  if (!c) return NextNearTransition(after, zone);
  // Without a change of the clocks from a margin before `after` to a margin past the
  // match, local time runs with real time and the match is the answer.
  const absl::Time at = zone.At(absl::CivilSecond(*c)).pre;
  absl::TimeZone::CivilTransition transition;
  if (zone.NextTransition(after - absl::Minutes(kMarginMinutes), &transition) &&
      zone.At(transition.to).trans <= at + absl::Minutes(kMarginMinutes)) {
    return NextNearTransition(after, zone);
  }
  return at;
}

// Every matching civil minute from a margin before `after`, each mapped to its instants:
// a skipped one to the end of the gap, a repeated one to its first occurrence (and its
// second too when the hour field starts with '*'). The earliest instant after `after`
// wins; the scan stops once later civil minutes can only map later.
std::optional<absl::Time> CronExpression::NextNearTransition(absl::Time after,
                                                             const absl::TimeZone& zone) const {
  std::optional<absl::Time> best;
  auto consider = [&](absl::Time t) {
    if (t > after && (!best || t < *best)) best = t;
  };
  for (std::optional<absl::CivilMinute> c =
           FirstMatch(absl::ToCivilMinute(after, zone) - kMarginMinutes);
       c; c = FirstMatch(*c + 1)) {
    if (best && *c > absl::ToCivilMinute(*best, zone) + kMarginMinutes) break;
    const absl::TimeZone::TimeInfo info = zone.At(absl::CivilSecond(*c));
    switch (info.kind) {
      case absl::TimeZone::TimeInfo::UNIQUE:
        consider(info.pre);
        break;
      case absl::TimeZone::TimeInfo::SKIPPED:
        consider(info.trans);
        break;
      case absl::TimeZone::TimeInfo::REPEATED:
        consider(info.pre);
        if (hour_star_) consider(info.post);
        break;
    }
  }
  return best;
}

}  // namespace jobstream::schedules
