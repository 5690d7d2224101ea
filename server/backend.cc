#include "server/backend.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "server/metrics/server_metrics.h"
#include "server/storage/deliveries.h"
#include "server/storage/disk_space.h"
#include "server/storage/job_store.h"
#include "server/storage/pg/leader.h"
#include "server/storage/pg/pg_store.h"
#include "server/watch/pg_event_feed.h"

namespace jobstream::server {
namespace {

bool Enabled(const WebhookSetup& webhooks) {
  return webhooks.policy != nullptr && webhooks.policy->enabled();
}

class RocksBackend : public Backend {
 public:
  jobs::JobBackend* jobs() override { return manager_.get(); }
  watch::EventHub* hub() override { return hub_.get(); }
  const storage::EventReader* reader() override { return store_.get(); }
  schedules::ScheduleStore* schedules() override { return schedules_.get(); }
  bool LeadsSchedules() override { return true; }  // the data dir's only server

  void DeclareMetrics() override {
    using Values = std::vector<std::pair<std::string, double>>;
    metrics::Registry& r = server_metrics::Registry();
    storage::DiskSpace* disk = disk_.get();
    r.DeclareGaugeFunc("jobstream_disk_free_bytes",
                       "Free bytes on the data dir's filesystem (-1: unknown).", "",
                       [disk]() -> Values { return {{"", double(disk->FreeBytes())}}; });
    r.DeclareGaugeFunc("jobstream_disk_floor_bytes",
                       "Below this many free bytes new work is refused (--min_free_disk_bytes).",
                       "", [disk]() -> Values { return {{"", double(disk->floor_bytes())}}; });
    rocksdb::DB* db = store_->db();
    auto property = [db](const std::string& name) {
      return [db, name]() -> Values {
        uint64_t value = 0;
        if (!db->GetAggregatedIntProperty(name, &value)) return {};
        return {{"", double(value)}};
      };
    };
    r.DeclareGaugeFunc("jobstream_rocksdb_pending_compaction_bytes",
                       "Bytes RocksDB estimates its compactions have yet to rewrite.", "",
                       property(rocksdb::DB::Properties::kEstimatePendingCompactionBytes));
    r.DeclareGaugeFunc("jobstream_rocksdb_live_sst_bytes",
                       "Bytes of the SST files RocksDB's current version holds.", "",
                       property(rocksdb::DB::Properties::kLiveSstFilesSize));
    r.DeclareGaugeFunc("jobstream_rocksdb_write_stopped",
                       "1 while RocksDB stops writes until compactions catch up.", "",
                       property(rocksdb::DB::Properties::kIsWriteStopped));
    r.DeclareGaugeFunc("jobstream_rocksdb_delayed_write_rate_bytes",
                       "The rate RocksDB slows writes to while compactions lag (0: not slowed).",
                       "", property(rocksdb::DB::Properties::kActualDelayedWriteRate));
  }

  absl::Status Open(const RocksOptions& options, const jobs::JobTypes* types) {
    auto store = storage::JobStore::Open(options.data_dir);
    if (!store.ok()) return store.status();
    store_ = *std::move(store);
    schedules_ = schedules::NewRocksScheduleStore(store_.get());
    disk_ = std::make_unique<storage::DiskSpace>(options.data_dir, options.min_free_disk_bytes);
    hub_ = std::make_unique<watch::EventHub>(store_.get(), options.watch);
    jobs::ManagerOptions manager_options = options.manager;
    manager_options.disk = disk_.get();
    manager_ = std::make_unique<jobs::JobManager>(store_.get(), hub_.get(), types, manager_options);
    // Deliveries stored before a stop go out again, whatever webhooks are allowed now (each
    // attempt checks its URL against the list).
    if (Enabled(options.webhooks)) {
      deliveries_ =
          std::make_unique<webhooks::RocksDeliveries>(store_.get(), &manager_->committer());
      webhooks_ = std::make_unique<webhooks::WebhookSender>(
          deliveries_.get(), options.webhooks.policy, options.webhooks.options);
      if (absl::Status s = webhooks_->Start(); !s.ok()) return s;
      manager_->SetWebhookSender(webhooks_.get());
    }
    if (absl::Status s = manager_->Recover(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("recovery failed: ", s.message()));
    }
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (webhooks_) webhooks_->Stop();  // what is queued stays for the next start
    manager_->Stop();
    std::cerr << "jobstream-server: committed " << manager_->committer().writes_committed()
              << " writes in " << manager_->committer().groups_written() << " synced groups\n";
    absl::Status health = manager_->committer().health();
    webhooks_.reset();
    manager_.reset();
    schedules_.reset();
    store_.reset();  // flushes and closes RocksDB
    return health;
  }

 private:
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<schedules::ScheduleStore> schedules_;
  std::unique_ptr<storage::DiskSpace> disk_;
  std::unique_ptr<watch::EventHub> hub_;
  std::unique_ptr<jobs::JobManager> manager_;
  std::unique_ptr<webhooks::RocksDeliveries> deliveries_;
  std::unique_ptr<webhooks::WebhookSender> webhooks_;
};

class PgBackend : public Backend {
 public:
  jobs::JobBackend* jobs() override { return manager_.get(); }
  watch::EventHub* hub() override { return hub_.get(); }
  const storage::EventReader* reader() override { return store_.get(); }
  schedules::ScheduleStore* schedules() override { return schedules_.get(); }
  bool LeadsSchedules() override { return schedule_leader_->TryLead(); }

  absl::Status Open(const PgOptions& options, const jobs::JobTypes* types) {
    auto store = storage::pg::PgStore::Open(options.url, options.pool_size);
    if (!store.ok()) return store.status();
    store_ = *std::move(store);
    schedules_ = schedules::NewPgScheduleStore(store_->pool());
    leader_ = std::make_unique<storage::pg::PgLeader>(options.url, storage::pg::kChoresLock);
    schedule_leader_ =
        std::make_unique<storage::pg::PgLeader>(options.url, storage::pg::kSchedulesLock);
    hub_ = std::make_unique<watch::EventHub>(store_.get(), options.watch);
    jobs::PgManagerOptions manager_options = options.manager;
    manager_options.leader = leader_.get();
    manager_options.call_threads = options.pool_size;
    manager_ = std::make_unique<jobs::PgJobManager>(store_.get(), types, manager_options);
    if (Enabled(options.webhooks)) {
      deliveries_ = std::make_unique<webhooks::PgDeliveries>(store_.get());
      webhooks_ = std::make_unique<webhooks::WebhookSender>(
          deliveries_.get(), options.webhooks.policy, options.webhooks.options);
      if (absl::Status s = webhooks_->Start(); !s.ok()) return s;
    }
    feed_ = std::make_unique<watch::PgEventFeed>(options.url, store_.get(), hub_.get());
    feed_->SetObserver([this](const v1::JobEvent& e) {
      manager_->Observe(e);
      // A delivery any server wrote is tried at once; the senders race for it, and the
      // first to take it holds it.
      if (webhooks_ && e.status().has_webhook() &&
          storage::WantsDelivery(e.status().webhook(), e.type())) {
        webhooks_->Schedule(e.job_id(), e.sequence(), absl::ToUnixMillis(absl::Now()));
      }
    });
    if (absl::Status s = feed_->Start(); !s.ok()) return s;
    return manager_->Recover();
  }

  absl::Status Close() override {
    if (webhooks_) webhooks_->Stop();  // what is pending stays for any server
    manager_->Stop();  // writes what runs queued; every call committed before it answered
    feed_->Stop();
    feed_.reset();
    webhooks_.reset();
    manager_.reset();
    schedule_leader_.reset();  // another server fires from now on
    schedules_.reset();
    store_.reset();
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<storage::pg::PgStore> store_;
  std::unique_ptr<schedules::ScheduleStore> schedules_;
  std::unique_ptr<storage::pg::PgLeader> leader_;
  std::unique_ptr<storage::pg::PgLeader> schedule_leader_;
  std::unique_ptr<watch::EventHub> hub_;
  std::unique_ptr<jobs::PgJobManager> manager_;
  std::unique_ptr<webhooks::PgDeliveries> deliveries_;
  std::unique_ptr<webhooks::WebhookSender> webhooks_;
  std::unique_ptr<watch::PgEventFeed> feed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> OpenRocksBackend(const RocksOptions& options,
                                                          const jobs::JobTypes* types) {
  auto backend = std::make_unique<RocksBackend>();
  if (absl::Status s = backend->Open(options, types); !s.ok()) return s;
  return backend;
}

absl::StatusOr<std::unique_ptr<Backend>> OpenPgBackend(const PgOptions& options,
                                                       const jobs::JobTypes* types) {
  auto backend = std::make_unique<PgBackend>();
  if (absl::Status s = backend->Open(options, types); !s.ok()) return s;
  return backend;
}

}  // namespace jobstream::server
