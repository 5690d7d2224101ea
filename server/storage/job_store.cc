#include "absl/strings/string_view.h"
#include "server/storage/job_store.h"

#include "absl/strings/str_cat.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/filter_policy.h"

namespace jobstream::storage {

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

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (const CfInfo& info : kColumnFamilies) families.emplace_back(info.name, cf_options);

  std::unique_ptr<JobStore> store(new JobStore());
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, families, &store->handles_, &db);
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

absl::Status JobStore::Write(const std::vector<const Batch*>& batches, bool sync) {
  // RocksDB applies the entries before a reversed DeleteRange and then fails, so a batch
  // would be half-written: refuse it whole, up front.
  for (const Batch* batch : batches) {
    for (const Batch::Mutation& m : batch->ops_) {
      if (m.op == Batch::Op::kDeleteRange && m.value < m.key) {
        return absl::InvalidArgumentError("delete range ends before it begins");
      }
    }
  }
  rocksdb::WriteBatch wb;
  for (const Batch* batch : batches) {
    for (const Batch::Mutation& m : batch->ops_) {
      rocksdb::Status s;
      switch (m.op) {
        case Batch::Op::kPut: s = wb.Put(handle(m.cf), m.key, m.value); break;
        case Batch::Op::kDelete: s = wb.Delete(handle(m.cf), m.key); break;
        case Batch::Op::kDeleteRange: s = wb.DeleteRange(handle(m.cf), m.key, m.value); break;
      }
      if (!s.ok()) return FromRocks(s, "building write batch");
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, &wb), "writing batch");
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

absl::StatusOr<std::optional<std::pair<int64_t, std::string>>> JobStore::GetTombstone(
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
  std::string upper = EventKey(job_id, until + 1);
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

}  // namespace jobstream::storage
