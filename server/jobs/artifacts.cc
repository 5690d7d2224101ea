// JobManager, part three: artifacts. Starting an upload (checked against the attempt that
// holds the job and the limits), counting its bytes against the job's limit, committing
// it as an ARTIFACT event, reading one back, and removing what uploads left behind.
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <iostream>
#include "server/jobs/artifact_upload.h"
#include "server/jobs/ids.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/leases.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

using storage::Batch;
using storage::Cf;
using v1::Job;
using v1::JobEvent;


absl::StatusOr<JobManager::LiveJob*> JobManager::FindHolder(const ArtifactHolder& holder) {
  if (!holder.lease_id.empty()) return FindLease(holder.lease_id, holder.scope);
  auto it = live_.find(holder.job_id);
  if (it == live_.end() || it->second.control == nullptr ||
      it->second.control != holder.control) {
    return absl::FailedPreconditionError(
        absl::StrCat("the attempt of job ", holder.job_id, " that attached this has ended"));
  }
  return &it->second;
}

absl::StatusOr<std::unique_ptr<ArtifactUpload>> JobManager::BeginArtifact(
    ArtifactHolder holder, const v1::ArtifactHeader& header) {
  const ArtifactLimits& limits = options_.artifacts;
  auto start = CheckArtifactHeader(header, limits);
  if (!start.ok()) return start.status();
  const std::optional<int64_t> size = start->size;
  if (options_.disk != nullptr) {
    if (absl::Status s = options_.disk->Admit(size.value_or(0)); !s.ok()) return s;
  }
  v1::Artifact artifact = std::move(start->artifact);
  {
    absl::MutexLock lock(&mu_);
    auto live = FindHolder(holder);
    if (!live.ok()) return live.status();
    const Job& job = (*live)->job;
    if (holder.job_id.empty()) holder.job_id = job.id();
    if (absl::Status s = CheckArtifactRoom(job, header.name(), size,
                                           (*live)->artifact_bytes_reserved, limits);
        !s.ok()) {
      return s;
    }
    artifact.set_attempt(job.attempt());
  }
  return std::unique_ptr<ArtifactUpload>(new ArtifactUpload(
      this, std::move(holder), std::move(artifact), size, header.sha256(),
      limits.max_artifact_bytes));
}

absl::StatusOr<std::unique_ptr<ArtifactUpload>> JobManager::BeginWorkerArtifact(
    const v1::ArtifactHeader& header, const auth::Scope& scope) {
  auto job_id = LeaseJobId(header.lease_id());
  if (!job_id.ok()) return job_id.status();
  return BeginArtifact(ArtifactHolder{*job_id, header.lease_id(), nullptr, scope}, header);
}

absl::Status JobManager::ReserveArtifactBytes(const ArtifactHolder& holder,
                                              const std::string& name, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  auto live = FindHolder(holder);
  if (!live.ok()) return live.status();
  const int64_t limit = options_.artifacts.max_job_artifact_bytes;
  if (CommittedArtifactBytes((*live)->job, name) + (*live)->artifact_bytes_reserved + bytes > limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("job ", holder.job_id, "'s artifacts are over the limit of ", limit,
                     " bytes per job (--max_job_artifact_bytes)"));
  }
  (*live)->artifact_bytes_reserved += bytes;
  return absl::OkStatus();
}

absl::Status JobManager::MarkUpload(const std::string& job_id, uint64_t upload_id) {
  // Synced before any chunk can reach the disk, so a crash never leaves chunks that
  // recovery would not find.
  Batch batch;
  batch.Put(Cf::kUploads, storage::UploadKey(upload_id), job_id);
  return store_->Write(batch, /*sync=*/true);
}

absl::Status JobManager::WriteArtifactChunk(const std::string& job_id, uint64_t upload_id,
                                            uint32_t index, std::string data, bool first) {
  if (first) {
    if (absl::Status s = MarkUpload(job_id, upload_id); !s.ok()) return s;
  }
  Batch batch;
  batch.Put(Cf::kArtifacts, storage::ArtifactChunkKey(job_id, upload_id, index), std::move(data));
  return store_->WriteUnlogged(batch);
}

void JobManager::CommitArtifact(const ArtifactHolder& holder, v1::Artifact artifact,
                                const storage::ArtifactRecord& record, std::string tail,
                                uint32_t tail_index, bool wrote, int64_t reserved,
                                ArtifactUpload::Done done) {
  Batch batch;  // committed with the artifact
  absl::Status written;
  if (!tail.empty()) {
    if (wrote) {
      Batch chunk;
      chunk.Put(Cf::kArtifacts,
                storage::ArtifactChunkKey(holder.job_id, record.upload_id(), tail_index),
                std::move(tail));
      written = store_->WriteUnlogged(chunk);
    } else {
      batch.Put(Cf::kArtifacts,
                storage::ArtifactChunkKey(holder.job_id, record.upload_id(), tail_index),
                std::move(tail));
    }
  }
  // The chunks were written without the WAL: on disk only once flushed.
  if (written.ok() && wrote) written = store_->FlushArtifacts();
  if (!written.ok()) {
    EndArtifactUpload(holder.job_id, record.upload_id(), wrote, reserved);
    return done(written);
  }
  CommitArtifactBatch(holder, std::move(artifact), record, std::move(batch), wrote, reserved,
                      std::move(done));
}

void JobManager::EndArtifactUpload(const std::string& job_id, uint64_t upload_id, bool marked,
                                   int64_t reserved) {
  if (reserved > 0) {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(job_id);
    if (it != live_.end()) {
      it->second.artifact_bytes_reserved =
          std::max<int64_t>(0, it->second.artifact_bytes_reserved - reserved);
    }
  }
  if (!marked) return;
  // Unlogged is enough: if this is lost in a crash, the marker makes recovery do it again.
  Batch batch;
  auto [begin, end] = storage::ArtifactUploadRange(job_id, upload_id);
  batch.DeleteRange(Cf::kArtifacts, std::move(begin), std::move(end));
  batch.Delete(Cf::kUploads, storage::UploadKey(upload_id));
  store_->WriteUnlogged(batch).IgnoreError();  // a failing store fails every commit anyway
}

void JobManager::CommitArtifactBatch(const ArtifactHolder& holder, v1::Artifact artifact,
                                     const storage::ArtifactRecord& record, Batch batch,
                                     bool marked, int64_t reserved, ArtifactUpload::Done done) {
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    auto found = FindHolder(holder);
    if (found.ok()) {
      LiveJob& live = **found;
      Job& job = live.job;
      live.artifact_bytes_reserved = std::max<int64_t>(0, live.artifact_bytes_reserved - reserved);
      reserved = 0;
      const std::string& name = artifact.name();
      // The artifact this one replaces: its chunks go in the same batch.
      std::optional<uint64_t> old_upload;
      if (auto it = live.artifact_uploads.find(name); it != live.artifact_uploads.end()) {
        old_upload = it->second;
      } else if (HasArtifact(job, name)) {
        auto old = store_->GetArtifactRecord(job.id(), name);
        if (old.ok()) old_upload = old->upload_id();
      }
      if (!HasArtifact(job, name) && job.artifacts_size() >= options_.artifacts.max_artifacts_per_job) {
        error = absl::ResourceExhaustedError(
            absl::StrCat("job ", job.id(), " has ", job.artifacts_size(),
                         " artifacts; the limit is ", options_.artifacts.max_artifacts_per_job,
                         " per job (--max_artifacts_per_job)"));
      } else {
        if (old_upload) {
          auto [begin, end] = storage::ArtifactUploadRange(job.id(), *old_upload);
          batch.DeleteRange(Cf::kArtifacts, std::move(begin), std::move(end));
        }
        batch.Put(Cf::kArtifacts, storage::ArtifactRecordKey(job.id(), name),
                  record.SerializeAsString());
        if (marked) batch.Delete(Cf::kUploads, storage::UploadKey(record.upload_id()));
        *artifact.mutable_create_time() = v1::ToProto(absl::Now());
        bool replaced = false;
        for (v1::Artifact& a : *job.mutable_artifacts()) {
          if (a.name() == name) {
            a = artifact;
            replaced = true;
          }
        }
        if (!replaced) *job.add_artifacts() = artifact;
        live.artifact_uploads[name] = record.upload_id();
        auto on_commit = [artifact, done](absl::StatusOr<Job> job) {
          if (job.ok()) done(artifact); else done(job.status());
        };
        error = Commit(live, JobEvent::ARTIFACT, std::move(batch), std::move(on_commit),
                       &artifact);
        if (error.ok()) return;
        marked = false;  // the store failed: leave the chunks to recovery
      }
    } else {
      error = found.status();
    }
  }
  EndArtifactUpload(holder.job_id, record.upload_id(), marked, reserved);
  done(error);
}

absl::StatusOr<StoredArtifact> JobManager::FindArtifact(const std::string& job_id,
                                                        const std::string& name,
                                                        const auth::Scope& scope) const {
  if (absl::Status s = ValidateJobId(job_id); !s.ok()) return s;
  if (absl::Status s = v1::ValidateArtifactName(name); !s.ok()) return s;
  auto found = store_->GetJobAndArtifactRecord(job_id, name);
  if (absl::IsNotFound(found.status())) return watch::JobNotFound(*store_, job_id, scope);
  if (!found.ok()) return found.status();
  auto& [job, record] = *found;
  if (!scope.Sees(job)) return watch::NoSuchJob(job_id);
  for (const v1::Artifact& a : job.artifacts()) {
    if (a.name() == name && record) return StoredArtifact{a, *record};
  }
  return NoSuchArtifact(job, name);
}

absl::Status JobManager::RemoveAbandonedUploads() {
  Batch batch;
  int abandoned = 0;
  absl::Status scan = store_->Scan(Cf::kUploads, "", false, [&](auto key, auto value) {
    if (key.size() != 8) return true;
    const uint64_t upload_id = storage::GetBigEndian64(key);
    auto [begin, end] = storage::ArtifactUploadRange(value, upload_id);
    batch.DeleteRange(Cf::kArtifacts, std::move(begin), std::move(end));
    batch.Delete(Cf::kUploads, std::string(key));
    ++abandoned;
    return true;
  });
  if (!scan.ok() || batch.empty()) return scan;
  std::cerr << "jobstream-server: removing " << abandoned
            << " artifact upload(s) cut off by the last stop\n";
  return store_->Write(batch, /*sync=*/true);
}

void JobManager::CompactRemovedArtifacts(const std::vector<std::string>& job_ids) {
  if (job_ids.empty()) return;
  // One compaction over the span of the removed ids (they sort by creation time, and a
  // purge removes a span of old jobs), off the committer's thread.
  auto [first, last] = std::minmax_element(job_ids.begin(), job_ids.end());
  compactor_.Post([this, first = *first, last = *last] {
    store_->CompactArtifacts(first, last).IgnoreError();
  });
}

}  // namespace jobstream::jobs
