// Every decoder of stored keys and values, and of the ids and names clients send, on
// hostile bytes (a corrupt store, or a hostile caller).
#include <cstddef>
#include <cstdint>

#include "jobstream/v1/artifacts.h"
#include "server/jobs/ids.h"
#include "server/jobs/leases.h"
#include "server/storage/keys.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jobstream;
  const absl::string_view s(reinterpret_cast<const char*>(data), size);
  (void)storage::ParseQueueKey(s);
  (void)storage::ParseByTimeKey(s);
  (void)storage::ParseTombstoneValue(s);
  (void)storage::ParseWebhookQueueKey(s);
  (void)jobs::ValidateJobId(s);
  (void)jobs::LeaseJobId(s);
  (void)v1::ValidateArtifactName(s);
  (void)v1::ValidateContentType(s);
  (void)v1::GuessContentType(s);
  (void)v1::IsSha256Hex(s);
  return 0;
}
