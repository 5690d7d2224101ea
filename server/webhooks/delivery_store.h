// DeliveryStore: where WebhookSender finds the deliveries it owes and writes what each
// attempt made of them. RocksDeliveries keeps them in the server's own RocksDB (one sender
// per store); PgDeliveries in PostgreSQL, where every server's sender may send any
// delivery: each takes one under a hold (its due time pushed past the attempt), so one
// sender at a time sends it, and a sender that died is succeeded once its hold passes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/storage/group_commit.h"
#include "server/storage/job_store.h"
#include "server/storage/pg/pg_store.h"

namespace jobstream::webhooks {

// A delivery of event `sequence` of `job_id`, due at due_ms.
struct Due {
  int64_t due_ms = 0;
  std::string job_id;
  int64_t sequence = 0;
  bool operator<(const Due& o) const {
    return std::tie(due_ms, job_id, sequence) < std::tie(o.due_ms, o.job_id, o.sequence);
  }
};

class DeliveryStore {
 public:
  // A delivery taken to be sent: the job (for its webhook), the event (the body) and the
  // delivery's record as stored; `hold` is the store's token for recording it.
  struct Taken {
    v1::Job job;
    v1::JobEvent event;
    v1::WebhookDelivery record;
    int64_t hold = 0;
  };
  virtual ~DeliveryStore() = default;
  // What is pending, soonest first.
  virtual absl::StatusOr<std::vector<Due>> Pending() = 0;
  // Takes `due` to send now, held until hold_until_ms; none if it is not to be sent (gone
  // with its job, or taken by another server).
  virtual absl::StatusOr<std::optional<Taken>> Take(const Due& due, int64_t hold_until_ms) = 0;
  // Writes the attempt's outcome and, if next_due_ms, when the next one is due; then
  // `written` (with whether it was written: false if the hold was lost or the write failed).
  virtual void Record(const Due& due, const Taken& taken, const v1::WebhookDelivery& record,
                      std::optional<int64_t> next_due_ms, std::function<void(bool)> written) = 0;
  // How often to read Pending() again for deliveries others scheduled (infinite: never).
  virtual absl::Duration rescan_period() const = 0;
};

class RocksDeliveries : public DeliveryStore {
 public:
  RocksDeliveries(storage::JobStore* store, storage::GroupCommitter* committer)
      : store_(store), committer_(committer) {}
  absl::StatusOr<std::vector<Due>> Pending() override;
  absl::StatusOr<std::optional<Taken>> Take(const Due& due, int64_t hold_until_ms) override;
  void Record(const Due& due, const Taken& taken, const v1::WebhookDelivery& record,
              std::optional<int64_t> next_due_ms, std::function<void(bool)> written) override;
  // This server writes every delivery its store holds, and schedules each as it does.
  absl::Duration rescan_period() const override { return absl::InfiniteDuration(); }

 private:
  storage::JobStore* const store_;
  storage::GroupCommitter* const committer_;
};

class PgDeliveries : public DeliveryStore {
 public:
  // Reads at most `scan_limit` pending deliveries per rescan.
  explicit PgDeliveries(storage::pg::PgStore* store, absl::Duration rescan = absl::Seconds(1),
                        int scan_limit = 1000)
      : store_(store), rescan_(rescan), scan_limit_(scan_limit) {}
  absl::StatusOr<std::vector<Due>> Pending() override;
  absl::StatusOr<std::optional<Taken>> Take(const Due& due, int64_t hold_until_ms) override;
  void Record(const Due& due, const Taken& taken, const v1::WebhookDelivery& record,
              std::optional<int64_t> next_due_ms, std::function<void(bool)> written) override;
  // Other servers write deliveries, and a server that dies leaves its retries to the rest.
  absl::Duration rescan_period() const override { return rescan_; }

 private:
  storage::pg::PgStore* const store_;
  const absl::Duration rescan_;
  const int scan_limit_;
};

}  // namespace jobstream::webhooks
