#include "server/schedules/schedule_record.h"

#include "server/storage/records.pb.h"

namespace jobstream::schedules {

int64_t WakeMs(const StoredSchedule& s) {
  return s.wake ? std::max<int64_t>(1, absl::ToUnixMillis(*s.wake)) : 0;
}

std::string EncodeSchedule(const StoredSchedule& s) {
  storage::ScheduleRecord record;
  s.schedule.SerializeToString(record.mutable_schedule());
  record.set_handled_until_ms(absl::ToUnixMillis(s.state.handled_until));
  if (s.state.pending) record.set_pending_ms(absl::ToUnixMillis(*s.state.pending));
  for (absl::Time t : s.state.submitting) record.add_submitting_ms(absl::ToUnixMillis(t));
  record.set_version(s.version);
  record.set_wake_ms(WakeMs(s));
  return record.SerializeAsString();
}

absl::StatusOr<StoredSchedule> DecodeSchedule(absl::string_view bytes) {
  storage::ScheduleRecord record;
  StoredSchedule s;
  if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      !s.schedule.ParseFromString(record.schedule())) {
    return absl::DataLossError("a stored schedule does not parse");
  }
  s.state.handled_until = absl::FromUnixMillis(record.handled_until_ms());
  if (record.has_pending_ms()) s.state.pending = absl::FromUnixMillis(record.pending_ms());
  for (int64_t ms : record.submitting_ms()) s.state.submitting.push_back(absl::FromUnixMillis(ms));
  s.version = record.version();
  if (record.wake_ms() != 0) s.wake = absl::FromUnixMillis(record.wake_ms());
  return s;
}

}  // namespace jobstream::schedules
