#include "server/jobs/artifact_upload.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::jobs {
namespace {

uint64_t NewUploadId() {
  static absl::Mutex mu;
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::Uniform<uint64_t>(*gen, 1, UINT64_MAX);
}

}  // namespace

absl::StatusOr<ArtifactStart> CheckArtifactHeader(const v1::ArtifactHeader& header,
                                                  const ArtifactLimits& limits) {
  if (absl::Status s = v1::ValidateArtifactName(header.name()); !s.ok()) return s;
  std::string content_type = header.content_type();
  if (content_type.empty()) {
    content_type = v1::GuessContentType(header.name());
  } else if (absl::Status s = v1::ValidateContentType(content_type); !s.ok()) {
    return s;
  }
  if (!header.sha256().empty() && !v1::IsSha256Hex(header.sha256())) {
    return absl::InvalidArgumentError("sha256 must be 64 lower-case hex digits");
  }
  ArtifactStart start;
  if (header.has_size()) {
    if (header.size() < 0) return absl::InvalidArgumentError("size must be >= 0");
    if (header.size() > limits.max_artifact_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("artifact \"", header.name(), "\" is ", header.size(),
                       " bytes; the limit is ", limits.max_artifact_bytes,
                       " bytes per artifact (--max_artifact_bytes)"));
    }
    start.size = header.size();
  }
  start.artifact.set_name(header.name());
  start.artifact.set_content_type(std::move(content_type));
  return start;
}

int64_t CommittedArtifactBytes(const v1::Job& job, const std::string& name) {
  int64_t total = 0;
  for (const v1::Artifact& a : job.artifacts()) {
    if (a.name() != name) total += a.size();
  }
  return total;
}

bool HasArtifact(const v1::Job& job, const std::string& name) {
  for (const v1::Artifact& a : job.artifacts()) {
    if (a.name() == name) return true;
  }
  return false;
}

absl::Status CheckArtifactRoom(const v1::Job& job, const std::string& name,
                               std::optional<int64_t> size, int64_t reserved,
                               const ArtifactLimits& limits) {
  if (!HasArtifact(job, name) && job.artifacts_size() >= limits.max_artifacts_per_job) {
    return absl::ResourceExhaustedError(
        absl::StrCat("job ", job.id(), " has ", job.artifacts_size(), " artifacts; the limit is ",
                     limits.max_artifacts_per_job, " per job (--max_artifacts_per_job)"));
  }
  if (size && CommittedArtifactBytes(job, name) + reserved + *size > limits.max_job_artifact_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("job ", job.id(), "'s artifacts would be over the limit of ",
                     limits.max_job_artifact_bytes, " bytes per job (--max_job_artifact_bytes)"));
  }
  return absl::OkStatus();
}

absl::Status NoSuchArtifact(const v1::Job& job, const std::string& name) {
  std::vector<std::string> names;
  for (const v1::Artifact& a : job.artifacts()) names.push_back("\"" + a.name() + "\"");
  return absl::NotFoundError(absl::StrCat(
      "job ", job.id(), " has no artifact \"", name, "\"",
      names.empty() ? " (it has none)" : absl::StrCat(" (it has ", absl::StrJoin(names, ", "), ")")));
}

ArtifactUpload::ArtifactUpload(ArtifactSink* sink, ArtifactHolder holder,
                               v1::Artifact artifact, std::optional<int64_t> expected_size,
                               std::string expected_sha256, int64_t max_bytes)
    : sink_(sink),
      holder_(std::move(holder)),
      artifact_(std::move(artifact)),
      expected_size_(expected_size),
      expected_sha256_(std::move(expected_sha256)),
      max_bytes_(max_bytes),
      upload_id_(NewUploadId()) {}

ArtifactUpload::~ArtifactUpload() {
  if (!finishing_) Discard();
}

void ArtifactUpload::Discard() {
  sink_->EndArtifactUpload(holder_.job_id, upload_id_, wrote_, reserved_);
  reserved_ = 0;
  wrote_ = false;
}

absl::Status ArtifactUpload::Append(absl::string_view data) {
  if (failed_ || finishing_) return absl::FailedPreconditionError("the upload has ended");
  auto fail = [this](absl::Status s) {
    failed_ = true;
    Discard();
    return s;
  };
  if (size_ + static_cast<int64_t>(data.size()) > max_bytes_) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(
        "artifact \"", name(), "\" is over the limit of ", max_bytes_,
        " bytes per artifact (--max_artifact_bytes)")));
  }
  if (expected_size_ && size_ + static_cast<int64_t>(data.size()) > *expected_size_) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "artifact \"", name(), "\" is longer than the ", *expected_size_,
        " bytes its header announced")));
  }
  while (!data.empty()) {
    const size_t take = std::min(data.size(), kArtifactChunkBytes - buffer_.size());
    buffer_.append(data.data(), take);
    sha_.Update(data.substr(0, take));
    size_ += static_cast<int64_t>(take);
    data.remove_prefix(take);
    if (buffer_.size() == kArtifactChunkBytes) {
      if (absl::Status s = WriteChunk(); !s.ok()) return fail(s);
    }
  }
  return absl::OkStatus();
}

absl::Status ArtifactUpload::WriteChunk() {
  // Counting against the job's limit also checks, each chunk, that the job is still ours.
  const int64_t more = size_ - reserved_;
  if (absl::Status s = sink_->ReserveArtifactBytes(holder_, name(), more); !s.ok()) return s;
  reserved_ += more;
  const bool first = !wrote_;
  wrote_ = true;  // from here a failure removes what may have been written
  absl::Status s =
      sink_->WriteArtifactChunk(holder_.job_id, upload_id_, chunks_written_, std::move(buffer_),
                                first);
  buffer_.clear();
  ++chunks_written_;
  return s;
}

void ArtifactUpload::Finish(Done done) {
  if (failed_ || finishing_) return done(absl::FailedPreconditionError("the upload has ended"));
  auto fail = [this, &done](absl::Status s) {
    failed_ = true;
    Discard();
    done(s);
  };
  if (expected_size_ && size_ != *expected_size_) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("artifact \"", name(), "\" is ", size_, " bytes; its header announced ",
                     *expected_size_)));
  }
  const std::string sha256 = sha_.HexDigest();
  if (!expected_sha256_.empty() && sha256 != expected_sha256_) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "artifact \"", name(), "\" has sha256 ", sha256, "; its header announced ",
        expected_sha256_)));
  }
  const int64_t more = size_ - reserved_;
  if (absl::Status s = sink_->ReserveArtifactBytes(holder_, name(), more); !s.ok()) {
    return fail(s);
  }
  reserved_ += more;
  artifact_.set_size(size_);
  artifact_.set_sha256(sha256);
  storage::ArtifactRecord record;
  record.set_upload_id(upload_id_);
  record.set_chunk_size(static_cast<int32_t>(kArtifactChunkBytes));
  record.set_size(size_);
  finishing_ = true;  // from here the commit owns the cleanup
  const uint32_t tail_index = chunks_written_;
  if (!buffer_.empty()) ++chunks_written_;
  sink_->CommitArtifact(holder_, artifact_, record, std::move(buffer_), tail_index, wrote_,
                        reserved_,
                        [done = std::move(done), size = size_](absl::StatusOr<v1::Artifact> a) {
                          if (a.ok()) server_metrics::CountArtifactBytes(true, size);
                          done(std::move(a));
                        });
  buffer_.clear();
}

absl::StatusOr<v1::Artifact> ArtifactUpload::Commit() {
  absl::Notification committed;
  absl::StatusOr<v1::Artifact> outcome;
  Finish([&](absl::StatusOr<v1::Artifact> artifact) {
    outcome = std::move(artifact);
    committed.Notify();
  });
  committed.WaitForNotification();
  return outcome;
}

}  // namespace jobstream::jobs
