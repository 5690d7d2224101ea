// The stored form of a schedule, shared by both stores.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/schedules/schedule_store.h"

namespace jobstream::schedules {

std::string EncodeSchedule(const StoredSchedule& s);
absl::StatusOr<StoredSchedule> DecodeSchedule(absl::string_view bytes);
// 0 for never.
int64_t WakeMs(const StoredSchedule& s);

}  // namespace jobstream::schedules
