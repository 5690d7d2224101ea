#include "server/storage/deliveries.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::storage {

bool WantsDelivery(const v1::Webhook& webhook, v1::JobEvent::Type type) {
  if (type == v1::JobEvent::PROGRESS || type == v1::JobEvent::SNAPSHOT) return false;
  if (webhook.events().empty()) {
    return type == v1::JobEvent::SUCCEEDED || type == v1::JobEvent::FAILED ||
           type == v1::JobEvent::CANCELLED;
  }
  const std::string name = absl::AsciiStrToLower(v1::JobEvent::Type_Name(type));
  for (const std::string& e : webhook.events()) {
    if (e == name) return true;
  }
  return false;
}

std::optional<v1::WebhookDelivery> DeliveryOf(const v1::Job& job, int64_t sequence,
                                              v1::JobEvent::Type type, absl::Time now) {
  if (!job.has_webhook() || !WantsDelivery(job.webhook(), type)) return std::nullopt;
  v1::WebhookDelivery delivery;
  delivery.set_id(absl::StrCat(job.id(), "-", sequence));
  delivery.set_sequence(sequence);
  delivery.set_event_type(type);
  delivery.set_state(v1::WebhookDelivery::PENDING);
  *delivery.mutable_next_attempt_time() = v1::ToProto(now);
  return delivery;
}

}  // namespace jobstream::storage
