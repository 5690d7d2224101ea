// Small facts about the API's types, defined once for the server, the client and the
// gateway: which states and events are final, Timestamp <-> absl::Time and
// Duration <-> absl::Duration.
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::v1 {

// SUCCEEDED, FAILED and CANCELLED: the job will not change again, unless an operator
// retries it (RetryJob).
inline bool IsFinished(Job::State state) {
  return state == Job::SUCCEEDED || state == Job::FAILED || state == Job::CANCELLED;
}

// The event that finishes a job (or a series of its attempts, if it is retried later): a
// job's stream ends right after the newest one, the server's end of the stream says so.
inline bool IsTerminal(JobEvent::Type type) {
  return type == JobEvent::SUCCEEDED || type == JobEvent::FAILED ||
         type == JobEvent::CANCELLED;
}

// An event an operator's call wrote carries its action: the job's last_action names the
// event's sequence. Called where a store numbers events.
inline void StampAction(JobEvent& event) {
  const OperatorAction& action = event.status().last_action();
  if (action.sequence() != 0 && action.sequence() == event.sequence()) {
    *event.mutable_action() = action;
  }
}

inline absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixNanos(google::protobuf::util::TimeUtil::TimestampToNanoseconds(ts));
}

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

inline absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

inline google::protobuf::Duration ToProto(absl::Duration d) {
  return google::protobuf::util::TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

// When a QUEUED job may start, Unix ms (never negative): its next_attempt_time if it is
// waiting to retry, else its run_at, else its create_time. Both stores order the queue by it.
inline int64_t ReadyMs(const Job& job) {
  const google::protobuf::Timestamp& ready = job.has_next_attempt_time() ? job.next_attempt_time()
                                             : job.has_run_at()          ? job.run_at()
                                                                         : job.create_time();
  const int64_t ms = absl::ToUnixMillis(ToTime(ready));
  return ms > 0 ? ms : 0;
}

}  // namespace jobstream::v1
