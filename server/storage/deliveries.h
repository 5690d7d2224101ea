// Webhook deliveries as both stores keep them: an event the job's webhook wants gets a
// PENDING delivery record, written in the same write as the event, so a delivery is never
// lost to a crash between the two.
#pragma once

#include <optional>

#include "absl/time/time.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::storage {

// Whether `webhook` wants events of `type` (its events, or by default the terminal ones;
// never PROGRESS or SNAPSHOT).
bool WantsDelivery(const v1::Webhook& webhook, v1::JobEvent::Type type);

// The delivery `job` (as of its event `sequence` of `type`) owes its webhook, due `now`;
// none if it has no webhook or the webhook does not want the event.
std::optional<v1::WebhookDelivery> DeliveryOf(const v1::Job& job, int64_t sequence,
                                              v1::JobEvent::Type type, absl::Time now);

}  // namespace jobstream::storage
