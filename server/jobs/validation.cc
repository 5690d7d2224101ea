#include "absl/strings/string_view.h"
#include "server/jobs/validation.h"

#include "jobstream/v1/job_states.h"
#include "server/jobs/graph.h"
#include "server/jobs/unique.h"
#include "server/tracing/trace_context.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace jobstream::jobs {

namespace {
constexpr size_t kMaxRequestId = 128;
constexpr size_t kMaxLabels = 256;  // the ceiling of --max_labels
constexpr size_t kMaxLabelKey = 63;
constexpr size_t kMaxLabelValue = 256;
constexpr int kMaxPriority = 1000;
constexpr int kMaxAttempts = 100;

std::string Shown(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, 64)), s.size() > 64 ? "…" : "", "\"");
}
}  // namespace

absl::Status ValidatePrintable(absl::string_view value, absl::string_view field, size_t max_size,
                               bool spaces) {
  if (value.size() > max_size) {
    return absl::InvalidArgumentError(absl::StrCat(field, " has ", value.size(),
                                                   " characters; at most ", max_size,
                                                   " are allowed"));
  }
  const char first = spaces ? 0x20 : 0x21;
  for (char c : value) {
    if (c < first || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(field, " ", Shown(value),
                                                     " must be printable ASCII",
                                                     spaces ? "" : " without spaces"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view id) {
  return ValidatePrintable(id, "request_id", kMaxRequestId, /*spaces=*/false);
}

absl::Status ValidateConcurrencyKey(absl::string_view key) {
  return ValidatePrintable(key, "concurrency_key", 128, /*spaces=*/true);
}

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxLabels, " labels are allowed, not ", labels.size()));
  }
  for (const auto& [key, value] : labels) {
    bool ok = !key.empty() && key.size() <= kMaxLabelKey;
    for (char c : key) {
      ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' ||
                  c == '-' || c == '/');
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label key ", Shown(key), " must be 1 to ", kMaxLabelKey,
          " characters of a-z 0-9 . _ - /"));
    }
    if (value.size() > kMaxLabelValue) {
      return absl::InvalidArgumentError(absl::StrCat("label ", key, " has a value of ",
                                                     value.size(), " bytes; the limit is ",
                                                     kMaxLabelValue));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStates(const google::protobuf::RepeatedField<int>& states) {
  for (int state : states) {
    if (state == v1::Job::STATE_UNSPECIFIED || !v1::Job::State_IsValid(state)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state ", state, " is not a job state (WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)"));
    }
  }
  return absl::OkStatus();
}

bool IsValidTimestamp(const google::protobuf::Timestamp& ts) {
  return ts.seconds() >= -62'135'596'800 && ts.seconds() <= 253'402'300'799 && ts.nanos() >= 0 &&
         ts.nanos() <= 999'999'999;
}

absl::StatusOr<absl::Duration> DurationWithin(const google::protobuf::Duration& d,
                                              absl::string_view field, absl::Duration min,
                                              absl::Duration max) {
  if (d.nanos() <= -1'000'000'000 || d.nanos() >= 1'000'000'000 ||
      (d.seconds() > 0 && d.nanos() < 0) || (d.seconds() < 0 && d.nanos() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not a valid Duration"));
  }
  const absl::Duration value = v1::ToDuration(d);
  if (value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", absl::FormatDuration(value), "; it must be ", absl::FormatDuration(min),
        " to ", absl::FormatDuration(max)));
  }
  return value;
}

absl::Status ValidateTypePause(const std::string& type, const std::optional<v1::TypePause>& pause,
                               const JobTypes& types) {
  if (types.Find(type) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        type.empty() ? "type is required" : absl::StrCat("unknown job type ", Shown(type)),
        "; known types: ", absl::StrJoin(types.Names(), ", ")));
  }
  if (!pause) return absl::OkStatus();
  return ValidateReason(pause->reason());
}

absl::Status ValidateReason(absl::string_view reason) {
  if (reason.size() > 500) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason has ", reason.size(), " bytes; at most 500 are allowed"));
  }
  for (char c : reason) {
    if ((c >= 0 && c < 0x20) || c == 0x7f) {
      return absl::InvalidArgumentError("reason must be text without control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSubmit(const v1::SubmitRequest& request, const JobTypes& types,
                            const Limits& limits, absl::Time now) {
  if (request.type().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "type is required; known types: ", absl::StrJoin(types.Names(), ", ")));
  }
  const JobType* type = types.Find(request.type());
  if (type == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown job type ", Shown(request.type()),
                                                   "; known types: ",
                                                   absl::StrJoin(types.Names(), ", ")));
  }
  const size_t params_bytes = request.params().ByteSizeLong();
  if (params_bytes > limits.max_params_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("params is ", params_bytes,
                                                   " bytes; the limit is ",
                                                   limits.max_params_bytes));
  }
  if (absl::Status s = ValidateRequestId(request.request_id()); !s.ok()) return s;
  if (absl::Status s = ValidateConcurrencyKey(request.concurrency_key()); !s.ok()) return s;
  if (!request.traceparent().empty() && !tracing::ParseTraceparent(request.traceparent())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "traceparent \"", request.traceparent().substr(0, 80),
        "\" is not a W3C traceparent (00-<32 hex digits>-<16 hex digits>-<2 hex digits>, "
        "neither id all zeros)"));
  }
  if (absl::Status s = ValidateLabels(request.labels()); !s.ok()) return s;
  if (request.labels_size() > limits.max_labels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the job has ", request.labels_size(), " labels; the limit is ", limits.max_labels,
        " (--max_labels)"));
  }
  if (request.priority() < -kMaxPriority || request.priority() > kMaxPriority) {
    return absl::InvalidArgumentError(absl::StrCat("priority ", request.priority(),
                                                   " is outside -", kMaxPriority, "..",
                                                   kMaxPriority));
  }
  if (request.max_attempts() < 0 || request.max_attempts() > kMaxAttempts) {
    return absl::InvalidArgumentError(absl::StrCat("max_attempts ", request.max_attempts(),
                                                   " is outside 1..", kMaxAttempts,
                                                   " (0 takes the type's default)"));
  }
  if (request.has_run_at()) {
    if (!IsValidTimestamp(request.run_at())) {
      return absl::InvalidArgumentError("run_at is not a valid timestamp");
    }
    absl::Time run_at = absl::FromUnixSeconds(request.run_at().seconds()) +
                        absl::Nanoseconds(request.run_at().nanos());
    if (run_at > now + absl::Hours(24 * 366)) {
      return absl::InvalidArgumentError("run_at is more than a year ahead");
    }
  }
  if (absl::Status s = ValidateDependsOn(request); !s.ok()) return s;
  if (absl::Status s = ValidateUnique(request); !s.ok()) return s;
  if (type->handler != nullptr) return type->handler->Validate(request.params());
  return absl::OkStatus();
}

absl::Status ValidateWaitTimeout(absl::Duration timeout) {
  const absl::Duration kMaxWaitJob = absl::Minutes(5);
  if (timeout >= absl::ZeroDuration() && timeout <= kMaxWaitJob) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("timeout ", absl::FormatDuration(timeout),
                                                 " is outside 0s..",
                                                 absl::FormatDuration(kMaxWaitJob)));
}

}  // namespace jobstream::jobs
