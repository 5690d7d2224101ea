// The interface every in-server job type is written on. A handler checks params at
// Submit (so bad params never become a job) and runs a job on a runner thread, reporting
// through a JobContext. Handlers are stateless and shared by every job of their type.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/artifact_upload.h"

namespace jobstream::jobs {

class JobContext {
 public:
  virtual ~JobContext() = default;
  virtual const std::string& job_id() const = 0;
  virtual int attempt() const = 0;
  virtual const google::protobuf::Struct& params() const = 0;
  // W3C traceparent of this attempt's span: what the work calls joins the job's trace.
  virtual std::string traceparent() const { return ""; }
  // Starts step `index` (1-based) of `count`, with overall completion `fraction`.
  virtual void Step(absl::string_view name, int index, int count, double fraction) = 0;
  // Progress within the current step; `fraction` is overall, 0..1.
  virtual void Progress(double fraction, absl::string_view message) = 0;
  // Either of the above, as a worker reports it: a STEP when the step changes.
  virtual void Report(const v1::Progress& progress) = 0;
  // True once the job should stop: a client cancelled it, it timed out, or the server is
  // stopping.
  virtual bool Cancelled() const = 0;
  // Sleeps up to `d`; returns false at once when Cancelled().
  virtual bool SleepFor(absl::Duration d) = 0;
  // Starts attaching a file (an empty content type is guessed from the name): Append its
  // bytes, then Commit; it is visible once committed. Errors as UploadArtifact's.
  virtual absl::StatusOr<std::unique_ptr<ArtifactUpload>> CreateArtifact(
      absl::string_view name, absl::string_view content_type) = 0;
};

// Attaches the file at `path` as artifact `name`, read in chunks (never whole).
absl::StatusOr<v1::Artifact> AttachFile(JobContext& ctx, absl::string_view name,
                                        absl::string_view content_type, const std::string& path);

// How a handler's error is read (Finish): an error marked retryable — or, unmarked,
// UNAVAILABLE — is retried while attempts remain; CANCELLED after a cancel request ends
// the job CANCELLED; anything else fails it for good.
void MarkRetryable(absl::Status& status, bool retryable = true);
bool IsRetryable(const absl::Status& status);
// Structured details for the job's error (Error.details).
void SetErrorDetails(absl::Status& status, const google::protobuf::Struct& details);
bool GetErrorDetails(const absl::Status& status, google::protobuf::Struct* details);

class Handler {
 public:
  virtual ~Handler() = default;
  // INVALID_ARGUMENT with a precise message for params this type cannot run.
  virtual absl::Status Validate(const google::protobuf::Struct& params) const = 0;
  // The job's result, or why the attempt failed (see MarkRetryable).
  virtual absl::StatusOr<google::protobuf::Value> Run(JobContext& ctx) const = 0;
};

}  // namespace jobstream::jobs
