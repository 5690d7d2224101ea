#include "server/webhooks/delivery_store.h"

#include <iostream>

#include "server/storage/keys.h"

namespace jobstream::webhooks {

using storage::Batch;
using storage::Cf;

absl::StatusOr<std::vector<Due>> RocksDeliveries::Pending() {
  std::vector<Due> pending;
  absl::Status status = store_->Scan(Cf::kWebhookQueue, "", false, [&](auto key, auto) {
    if (auto entry = storage::ParseWebhookQueueKey(key)) {
      pending.push_back({entry->due_ms, entry->job_id, entry->sequence});
    }
    return true;
  });
  if (!status.ok()) return status;
  return pending;
}

absl::StatusOr<std::optional<DeliveryStore::Taken>> RocksDeliveries::Take(const Due& due,
                                                                         int64_t) {
  // The job, its event and the delivery's record; a job removed meanwhile drops it.
  auto job = store_->GetJob(due.job_id);
  auto events = store_->ReadEvents(due.job_id, due.sequence - 1, due.sequence, 1);
  auto stored = store_->GetWebhookDelivery(due.job_id, due.sequence);
  if (!job.ok() || !events.ok() || events->empty() || !stored.ok()) {
    Batch batch;
    batch.Delete(Cf::kWebhookQueue,
                 storage::WebhookQueueKey(due.due_ms, due.job_id, due.sequence));
    committer_->Enqueue({std::move(batch), {}, nullptr}).IgnoreError();
    return std::nullopt;
  }
  return Taken{*std::move(job), std::move(events->front()), *std::move(stored), 0};
}

void RocksDeliveries::Record(const Due& due, const Taken&, const v1::WebhookDelivery& record,
                             std::optional<int64_t> next_due_ms,
                             std::function<void(bool)> written) {
  Batch batch;
  batch.Delete(Cf::kWebhookQueue, storage::WebhookQueueKey(due.due_ms, due.job_id, due.sequence));
  if (next_due_ms) {
    batch.Put(Cf::kWebhookQueue, storage::WebhookQueueKey(*next_due_ms, due.job_id, due.sequence),
              "");
  }
  batch.Put(Cf::kWebhooks, storage::EventKey(due.job_id, due.sequence), record.SerializeAsString());
  committer_
      ->Enqueue({std::move(batch), {}, [written](absl::Status s) { written(s.ok()); }})
      .IgnoreError();
}

absl::StatusOr<std::vector<Due>> PgDeliveries::Pending() {
  auto pending = store_->PendingDeliveries(scan_limit_);
  if (!pending.ok()) return pending.status();
  std::vector<Due> due;
  due.reserve(pending->size());
  for (auto& p : *pending) due.push_back({p.due_ms, std::move(p.job_id), p.sequence});
  return due;
}

absl::StatusOr<std::optional<DeliveryStore::Taken>> PgDeliveries::Take(const Due& due,
                                                                      int64_t hold_until_ms) {
  auto taken = store_->TakeDelivery(due.job_id, due.sequence, absl::ToUnixMillis(absl::Now()),
                                    hold_until_ms);
  if (!taken.ok()) return taken.status();
  if (!taken->has_value()) return std::nullopt;
  return Taken{std::move((*taken)->job), std::move((*taken)->event), std::move((*taken)->record),
               hold_until_ms};
}

void PgDeliveries::Record(const Due& due, const Taken& taken, const v1::WebhookDelivery& record,
                          std::optional<int64_t> next_due_ms,
                          std::function<void(bool)> written) {
  auto recorded = store_->RecordDelivery(due.job_id, due.sequence, taken.hold, record, next_due_ms);
  if (!recorded.ok()) {
    // Left as it was: once the hold passes, it is due again, and sent again.
    std::cerr << "jobstream-server: recording webhook delivery " << record.id() << ": "
              << recorded.status() << "\n";
  }
  written(recorded.ok() && *recorded);
}

}  // namespace jobstream::webhooks
