// ArtifactUpload: one file being attached to a running job, from a worker's
// UploadArtifact stream, the exec runner's output directory, or a built-in handler.
//
// Bytes are cut into chunks of kArtifactChunkBytes and never held whole. An artifact of
// one chunk or less is written with its commit, in one synced batch. A bigger one writes
// a marker (synced) naming its upload, then its chunks without the WAL — the bytes go to
// disk once, into blob files — and before its commit flushes them. The commit (the
// artifact's record, the Job's list, an ARTIFACT event) is one batch through the group
// committer, fenced by the attempt like every other change, so an artifact is visible
// only once it is whole and durable. An upload that fails, is abandoned, or is cut off by
// a crash leaves nothing: its chunks are removed at once, or by the marker at recovery.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/jobs.pb.h"
#include "jobstream/v1/workers.pb.h"
#include "server/auth/scope.h"
#include "server/storage/records.pb.h"

namespace jobstream::jobs {

struct RunControl;
class ArtifactUpload;

inline constexpr size_t kArtifactChunkBytes = 256 << 10;

struct ArtifactLimits {
  int64_t max_artifact_bytes = int64_t{1} << 30;      // 1 GiB
  int64_t max_job_artifact_bytes = int64_t{4} << 30;  // 4 GiB
  int max_artifacts_per_job = 100;
};

// An ArtifactHeader checked: the artifact as it starts (name, content type given or
// guessed) and the size it announced, if any.
struct ArtifactStart {
  v1::Artifact artifact;
  std::optional<int64_t> size;
};
absl::StatusOr<ArtifactStart> CheckArtifactHeader(const v1::ArtifactHeader& header,
                                                  const ArtifactLimits& limits);
// The job's checks of a new upload (`name`, `size` if announced): its count and bytes
// limits, counting `reserved` bytes of uploads in progress.
absl::Status CheckArtifactRoom(const v1::Job& job, const std::string& name,
                               std::optional<int64_t> size, int64_t reserved,
                               const ArtifactLimits& limits);
// The bytes of the job's committed artifacts, except one named `name` (an upload of that
// name replaces it).
int64_t CommittedArtifactBytes(const v1::Job& job, const std::string& name);
bool HasArtifact(const v1::Job& job, const std::string& name);
// NOT_FOUND naming the artifacts the job has.
absl::Status NoSuchArtifact(const v1::Job& job, const std::string& name);

// Who attaches an artifact: a worker's lease, or an in-server attempt (its RunControl).
struct ArtifactHolder {
  std::string job_id;
  std::string lease_id;
  std::shared_ptr<RunControl> control;
  auth::Scope scope;  // a worker's: a lease of a job beyond it is not held
};

// What an upload asks of the manager whose job it attaches to (JobManager on RocksDB,
// PgJobManager on PostgreSQL).
class ArtifactSink {
 public:
  using Done = std::function<void(absl::StatusOr<v1::Artifact>)>;
  virtual ~ArtifactSink() = default;
  // Counts `bytes` more against the job's limit, checking the holder still holds it.
  virtual absl::Status ReserveArtifactBytes(const ArtifactHolder& holder, const std::string& name,
                                            int64_t bytes) = 0;
  // Chunk `index` of upload `upload_id`, not visible until committed; `first` for the
  // upload's first chunk written this way.
  virtual absl::Status WriteArtifactChunk(const std::string& job_id, uint64_t upload_id,
                                          uint32_t index, std::string data, bool first) = 0;
  // Makes the upload durable and commits it, fenced by the holder: `tail` (maybe empty) is
  // its last chunk, `tail_index` its index, `wrote` whether chunks were written before.
  virtual void CommitArtifact(const ArtifactHolder& holder, v1::Artifact artifact,
                              const storage::ArtifactRecord& record, std::string tail,
                              uint32_t tail_index, bool wrote, int64_t reserved, Done done) = 0;
  // An upload that ends uncommitted: its chunks go, its reservation is given back.
  virtual void EndArtifactUpload(const std::string& job_id, uint64_t upload_id, bool wrote,
                                 int64_t reserved) = 0;
};

class ArtifactUpload {
 public:
  using Done = ArtifactSink::Done;

  // Made by a manager's BeginArtifact, once the header and the holder are checked.
  ArtifactUpload(ArtifactSink* sink, ArtifactHolder holder, v1::Artifact artifact,
                 std::optional<int64_t> expected_size, std::string expected_sha256,
                 int64_t max_bytes);

  ~ArtifactUpload();  // unless committed: removes whatever was written
  ArtifactUpload(const ArtifactUpload&) = delete;
  ArtifactUpload& operator=(const ArtifactUpload&) = delete;

  // The next bytes. RESOURCE_EXHAUSTED past a size limit; FAILED_PRECONDITION once the
  // holder lost the job. After an error the upload is dead: drop it.
  absl::Status Append(absl::string_view data);
  // Makes the bytes durable and commits the artifact; done gets it as the job lists it.
  // Checks the size and sha256 the header promised, if any. Call once.
  void Finish(Done done);
  // Finish, waiting for the outcome (runner threads).
  absl::StatusOr<v1::Artifact> Commit();

  const std::string& name() const { return artifact_.name(); }
  int64_t size() const { return size_; }

 private:
  absl::Status WriteChunk();
  void Discard();

  ArtifactSink* const sink_;
  const ArtifactHolder holder_;
  v1::Artifact artifact_;  // name, content type, attempt; size and sha256 at Finish
  const std::optional<int64_t> expected_size_;
  const std::string expected_sha256_;
  const int64_t max_bytes_;
  const uint64_t upload_id_;
  std::string buffer_;  // the chunk being filled
  uint32_t chunks_written_ = 0;
  int64_t size_ = 0;
  int64_t reserved_ = 0;  // bytes counted against the job's limit
  v1::Sha256 sha_;
  bool wrote_ = false;  // chunks were written: they must go unless committed
  bool finishing_ = false;
  bool failed_ = false;
};

}  // namespace jobstream::jobs
