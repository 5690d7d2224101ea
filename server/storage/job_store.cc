#include "server/storage/job_store.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rocksdb/env.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"

namespace jobstream::storage {
namespace {

// RocksDB's informational LOG in the data dir, written with stdio. RocksDB's own log
// writer asserts (in Debian's build) on the next line after a write to it failed, so a
// full disk would abort the server; this one drops what does not fit.
class InfoLog : public rocksdb::Logger {
 public:
  // The previous run's LOG is kept as LOG.old. Null if the file cannot be made (RocksDB
  // then says why the dir is unusable).
  static std::shared_ptr<InfoLog> Open(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::filesystem::rename(dir + "/LOG", dir + "/LOG.old", ec);
    std::FILE* file = std::fopen((dir + "/LOG").c_str(), "w");
    return file == nullptr ? nullptr : std::make_shared<InfoLog>(file);
  }
  explicit InfoLog(std::FILE* file) : file_(file) {}
  ~InfoLog() override { Close().PermitUncheckedError(); }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[2048];
    const int n = std::vsnprintf(line, sizeof line, format, ap);
    if (n < 0) return;
    const std::string stamp =
        absl::FormatTime("%Y/%m/%d-%H:%M:%E6S ", absl::Now(), absl::LocalTimeZone());
    absl::MutexLock lock(&mu_);
    if (file_ == nullptr) return;
    std::fputs(stamp.c_str(), file_);
    const size_t length = std::min<size_t>(n, sizeof line - 1);
    std::fwrite(line, 1, length, file_);
    if (length == 0 || line[length - 1] != '\n') std::fputc('\n', file_);
    std::fflush(file_);  // errors (a full disk) are dropped with the line
  }
  rocksdb::Status Close() override {
    absl::MutexLock lock(&mu_);
    if (file_ != nullptr) std::fclose(std::exchange(file_, nullptr));
    return rocksdb::Status::OK();
  }

 private:
  absl::Mutex mu_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void Batch::Put(Cf cf, std::string key, std::string value) {
  ops_.push_back({Op::kPut, cf, std::move(key), std::move(value)});
}
void Batch::Delete(Cf cf, std::string key) {
  ops_.push_back({Op::kDelete, cf, std::move(key), {}});
}
void Batch::DeleteRange(Cf cf, std::string begin, std::string end) {
  ops_.push_back({Op::kDeleteRange, cf, std::move(begin), std::move(end)});
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.IncreaseParallelism(2);
  options.info_log = InfoLog::Open(dir);
  // Memory and restart time stay bounded however deep the queue: all memtables together
  // hold at most 128 MB, and a crash leaves at most 256 MB of WAL to replay (a family
  // written rarely is flushed rather than keep old logs alive).
  options.db_write_buffer_size = 128 << 20;
  options.max_total_wal_size = 256 << 20;
  // Point lookups by job id dominate: bloom filters keep misses off the disk.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions cf_options(options);
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.write_buffer_size = 32 << 20;

  // Artifact chunks go to blob files: the LSM tree holds only small keys and pointers, so
  // compaction never rewrites the bytes, and blob GC reclaims a removed artifact's space.
  // A small memtable bounds what an upload holds in memory before it is flushed.
  rocksdb::ColumnFamilyOptions artifact_options(cf_options);
  artifact_options.enable_blob_files = true;
  artifact_options.min_blob_size = 4096;
  artifact_options.enable_blob_garbage_collection = true;
  artifact_options.write_buffer_size = 8 << 20;

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (const CfInfo& info : kColumnFamilies) {
    families.emplace_back(info.name, info.cf == Cf::kArtifacts ? artifact_options : cf_options);
  }

  std::unique_ptr<JobStore> store(new JobStore());
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, families, &store->handles_, &db);
  if (s.IsIOError() && s.ToString().find("While lock file") != std::string::npos) {
    // Two servers on one data dir would each believe they own every job.
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", dir, " is in use by another jobstream-server (it holds ", dir,
        "/LOCK); stop that one or choose another --data_dir"));
  }
  if (!s.ok()) return FromRocks(s, absl::StrCat("opening ", dir));
  store->db_.reset(db);
  return store;
}

JobStore::~JobStore() {
  if (!db_) return;
  rocksdb::FlushOptions flush;
  db_->Flush(flush, handles_);
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

absl::Status JobStore::Build(const std::vector<const Batch*>& batches,
                             rocksdb::WriteBatch* wb) const {
  // RocksDB applies the entries before a reversed DeleteRange and then fails, so a batch
  // would be half-written: refuse it whole, up front.
  for (const Batch* batch : batches) {
    for (const Batch::Mutation& m : batch->ops_) {
      if (m.op == Batch::Op::kDeleteRange && m.value < m.key) {
        return absl::InvalidArgumentError("delete range ends before it begins");
      }
    }
  }
  for (const Batch* batch : batches) {
    for (const Batch::Mutation& m : batch->ops_) {
      rocksdb::Status s;
      switch (m.op) {
        case Batch::Op::kPut: s = wb->Put(handle(m.cf), m.key, m.value); break;
        case Batch::Op::kDelete: s = wb->Delete(handle(m.cf), m.key); break;
        case Batch::Op::kDeleteRange: s = wb->DeleteRange(handle(m.cf), m.key, m.value); break;
      }
      if (!s.ok()) return FromRocks(s, "building write batch");
    }
  }
  return absl::OkStatus();
}

absl::Status JobStore::Write(const std::vector<const Batch*>& batches, bool sync) {
  rocksdb::WriteBatch wb;
  if (absl::Status s = Build(batches, &wb); !s.ok()) return s;
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, &wb), "writing batch");
}

absl::Status JobStore::Resume() { return FromRocks(db_->Resume(), "resuming writes"); }

absl::Status JobStore::WriteUnlogged(const Batch& batch) {
  rocksdb::WriteBatch wb;
  if (absl::Status s = Build({&batch}, &wb); !s.ok()) return s;
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  return FromRocks(db_->Write(wo, &wb), "writing artifact chunks");
}

absl::Status JobStore::FlushArtifacts() {
  rocksdb::FlushOptions flush;
  flush.wait = true;
  return FromRocks(db_->Flush(flush, handle(Cf::kArtifacts)), "flushing artifacts");
}

absl::Status JobStore::CompactArtifacts(const std::string& first_job_id,
                                        const std::string& last_job_id) {
  const std::string begin = JobArtifactsRange(first_job_id).first;
  const std::string end = JobArtifactsRange(last_job_id).second;
  rocksdb::Slice b(begin), e(end);
  rocksdb::CompactRangeOptions options;
  // Relocate whatever live blobs share a file with the removed ones, so the file goes.
  options.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
  options.blob_garbage_collection_age_cutoff = 1.0;
  return FromRocks(db_->CompactRange(options, handle(Cf::kArtifacts), &b, &e),
                   "compacting artifacts");
}

absl::StatusOr<std::pair<v1::Job, std::optional<ArtifactRecord>>>
JobStore::GetJobAndArtifactRecord(const std::string& job_id, const std::string& name) const {
  // One snapshot: the record is the one the job's artifact list was committed with.
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string job_value, record_value;
  rocksdb::Status js = db_->Get(ro, handle(Cf::kJobs), job_id, &job_value);
  rocksdb::Status rs = js.ok() ? db_->Get(ro, handle(Cf::kArtifacts),
                                          ArtifactRecordKey(job_id, name), &record_value)
                               : rocksdb::Status::OK();
  db_->ReleaseSnapshot(snapshot);
  if (!js.ok()) return FromRocks(js, absl::StrCat("job ", job_id));
  if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading an artifact record");
  std::pair<v1::Job, std::optional<ArtifactRecord>> found;
  if (!found.first.ParseFromString(job_value)) {
    return absl::DataLossError("corrupt job record " + job_id);
  }
  if (rs.ok()) {
    found.second.emplace();
    if (!found.second->ParseFromString(record_value)) {
      return absl::DataLossError(absl::StrCat("corrupt artifact record ", name, " of ", job_id));
    }
  }
  return found;
}

absl::StatusOr<ArtifactRecord> JobStore::GetArtifactRecord(const std::string& job_id,
                                                          const std::string& name) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Cf::kArtifacts),
                               ArtifactRecordKey(job_id, name), &value);
  if (!s.ok()) return FromRocks(s, absl::StrCat("artifact ", name, " of job ", job_id));
  ArtifactRecord record;
  if (!record.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("corrupt artifact record ", name, " of ", job_id));
  }
  return record;
}

absl::Status JobStore::ReadArtifactChunk(const std::string& job_id, uint64_t upload_id,
                                         uint32_t chunk, std::string* data) const {
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Cf::kArtifacts),
                               ArtifactChunkKey(job_id, upload_id, chunk), data);
  return FromRocks(s, absl::StrCat("chunk ", chunk, " of an artifact of job ", job_id));
}

absl::StatusOr<v1::WebhookDelivery> JobStore::GetWebhookDelivery(const std::string& job_id,
                                                                 int64_t sequence) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Cf::kWebhooks),
                               EventKey(job_id, sequence), &value);
  if (!s.ok()) return FromRocks(s, "reading a webhook delivery");
  v1::WebhookDelivery delivery;
  if (!delivery.ParseFromString(value)) {
    return absl::DataLossError("corrupt webhook delivery of " + job_id);
  }
  return delivery;
}

absl::StatusOr<std::vector<v1::WebhookDelivery>> JobStore::ListWebhookDeliveries(
    const std::string& job_id) const {
  std::vector<v1::WebhookDelivery> deliveries;
  const std::string end = EventKey(job_id, INT64_MAX);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handle(Cf::kWebhooks)));
  for (it->Seek(EventKey(job_id, 0)); it->Valid(); it->Next()) {
    if (!deliveries.emplace_back().ParseFromArray(it->value().data(),
                                                  static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt webhook delivery of " + job_id);
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading webhook deliveries");
  return deliveries;
}

absl::StatusOr<v1::Job> JobStore::GetJob(const std::string& job_id) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Cf::kJobs), job_id, &value);
  if (!s.ok()) return FromRocks(s, absl::StrCat("job ", job_id));
  v1::Job job;
  if (!job.ParseFromString(value)) return absl::DataLossError("corrupt job record " + job_id);
  return job;
}

absl::StatusOr<google::protobuf::Struct> JobStore::GetParams(const std::string& job_id) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Cf::kParams), job_id, &value);
  google::protobuf::Struct params;
  if (s.IsNotFound()) return params;
  if (!s.ok()) return FromRocks(s, "reading params");
  if (!params.ParseFromString(value)) return absl::DataLossError("corrupt params of " + job_id);
  return params;
}

absl::StatusOr<std::optional<Tombstone>> JobStore::GetTombstone(
    const std::string& job_id) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Cf::kTombstones), job_id, &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "reading tombstone");
  return ParseTombstoneValue(value);
}

absl::StatusOr<std::optional<std::string>> JobStore::GetRequest(
    const std::string& request_id) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), handle(Cf::kRequests), request_id, &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "reading request id");
  return value;
}

absl::StatusOr<std::vector<CommittedEventPtr>> JobStore::ReadCommittedEvents(
    const std::string& job_id, int64_t after, int64_t until, size_t limit) const {
  std::vector<CommittedEventPtr> events;
  if (until <= after) return events;
  // (An "until" of INT64_MAX means to the end: no bound past it.)
  std::string upper = EventKey(job_id, until == INT64_MAX ? until : until + 1);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handle(Cf::kEvents)));
  for (it->Seek(EventKey(job_id, after + 1)); it->Valid() && events.size() < limit; it->Next()) {
    auto committed = std::make_shared<CommittedEvent>();
    committed->wire = it->value().ToString();
    if (!committed->event.ParseFromString(committed->wire)) {
      return absl::DataLossError("corrupt event record of job " + job_id);
    }
    events.push_back(std::move(committed));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading events");
  return events;
}

absl::StatusOr<std::vector<v1::JobEvent>> JobStore::ReadEvents(const std::string& job_id,
                                                               int64_t after, int64_t until,
                                                               size_t limit) const {
  auto committed = ReadCommittedEvents(job_id, after, until, limit);
  if (!committed.ok()) return committed.status();
  std::vector<v1::JobEvent> events;
  events.reserve(committed->size());
  for (const CommittedEventPtr& e : *committed) events.push_back(e->event);
  return events;
}

std::unique_ptr<rocksdb::Iterator> JobStore::NewIterator(Cf cf) const {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(rocksdb::ReadOptions(), handle(cf)));
}

absl::Status JobStore::Scan(
    Cf cf, const std::string& start, bool reverse,
    const std::function<bool(absl::string_view, absl::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(cf)));
  if (reverse) {
    if (start.empty()) it->SeekToLast(); else it->SeekForPrev(start);
  } else {
    if (start.empty()) it->SeekToFirst(); else it->Seek(start);
  }
  for (; it->Valid(); reverse ? it->Prev() : it->Next()) {
    if (!fn(absl::string_view(it->key().data(), it->key().size()),
            absl::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  return FromRocks(it->status(), "scanning");
}

absl::Status JobStore::VisitQueuedNewestFirst(
    size_t max_read, const std::function<bool(const v1::Job&)>& visit) const {
  size_t read = 0;
  const std::string prefix = ByStatePrefix(v1::Job::QUEUED);
  return Scan(Cf::kByState, prefix + std::string(kByTimeKeyLength, '\xff'), /*reverse=*/true,
              [&](absl::string_view key, absl::string_view) {
                if (!absl::StartsWith(key, prefix) || ++read > max_read) return false;
                auto job = GetJob(std::string(key.substr(prefix.size() + 8)));
                // The index may trail the record by a write; only what is QUEUED counts.
                return !job.ok() || job->state() != v1::Job::QUEUED || visit(*job);
              });
}

}  // namespace jobstream::storage
