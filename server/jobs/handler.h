// The interface every in-server job type is written on. A handler checks params at
// Submit (so bad params never become a job) and runs a job on a runner thread, reporting
// through a JobContext. Handlers are stateless and shared by every job of their type.
#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"

namespace jobstream::jobs {

class JobContext {
 public:
  virtual ~JobContext() = default;
  virtual const google::protobuf::Struct& params() const = 0;
  // Starts step `index` (1-based) of `count`, with overall completion `fraction`.
  virtual void Step(absl::string_view name, int index, int count, double fraction) = 0;
  // Progress within the current step; `fraction` is overall, 0..1.
  virtual void Progress(double fraction, absl::string_view message) = 0;
  // True once the job should stop: a client cancelled it or the server is stopping.
  virtual bool Cancelled() const = 0;
  // Sleeps up to `d`; returns false at once when Cancelled().
  virtual bool SleepFor(absl::Duration d) = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // INVALID_ARGUMENT with a precise message for params this type cannot run.
  virtual absl::Status Validate(const google::protobuf::Struct& params) const = 0;
  // The job's result. An error fails the attempt: UNAVAILABLE is retried while attempts
  // remain, CANCELLED ends the job CANCELLED, anything else fails it for good.
  virtual absl::StatusOr<google::protobuf::Value> Run(JobContext& ctx) const = 0;
};

}  // namespace jobstream::jobs
