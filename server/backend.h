// Backend: the store a server runs on and what serves from it — a hub for watchers and a
// JobBackend for every call. RocksDB in a data dir is the embedded default; PostgreSQL
// (--store=postgresql://…) is shared by any number of servers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/pg_manager.h"
#include "server/schedules/schedule_store.h"
#include "server/watch/event_hub.h"
#include "server/webhooks/webhook_sender.h"

namespace jobstream::server {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual jobs::JobBackend* jobs() = 0;
  virtual watch::EventHub* hub() = 0;
  // The jobs' store, for reads of a job record alone.
  virtual const storage::EventReader* reader() = 0;
  virtual schedules::ScheduleStore* schedules() = 0;
  // Whether this server fires schedules now (always on RocksDB; on PostgreSQL the one
  // holding the schedules lock). Called by the scheduler's thread alone.
  virtual bool LeadsSchedules() = 0;
  // Declares the store's own gauges in the server's metrics (RocksDB: its disk and
  // compactions). Call once; scrapes must end before Close.
  virtual void DeclareMetrics() {}
  // Once nothing calls in any more (the runner stopped): writes what is under way and
  // closes the store. An error says the store failed earlier.
  virtual absl::Status Close() = 0;
};

// Webhook deliveries are sent when the policy allows any host.
struct WebhookSetup {
  const webhooks::WebhookPolicy* policy = nullptr;
  webhooks::WebhookOptions options;
};

struct RocksOptions {
  std::string data_dir;
  int64_t min_free_disk_bytes = 0;
  jobs::ManagerOptions manager;
  watch::WatchOptions watch;
  WebhookSetup webhooks;
};
// Opens (creating) the data dir and recovers what was live.
absl::StatusOr<std::unique_ptr<Backend>> OpenRocksBackend(const RocksOptions& options,
                                                          const jobs::JobTypes* types);

struct PgOptions {
  std::string url;  // postgresql://…
  int pool_size = 8;
  jobs::PgManagerOptions manager;  // its leader is made here
  watch::WatchOptions watch;
  // Every server with webhooks on sends any server's deliveries.
  WebhookSetup webhooks;
};
// Connects, brings the schema up to date, and follows the events of every server.
absl::StatusOr<std::unique_ptr<Backend>> OpenPgBackend(const PgOptions& options,
                                                       const jobs::JobTypes* types);

}  // namespace jobstream::server
