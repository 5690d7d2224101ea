// The --auth_tokens file on hostile bytes: the JSON parse and every rule the server checks
// (ParseTokenFile), and a presented Authorization value looked up against what loaded.
#include <cstddef>
#include <cstdint>

#include "server/auth/tokens.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto table = jobstream::auth::ParseTokenFile(bytes);
  if (table.ok()) {
    for (const auto& [sha256, principal] : *table) {
      (void)principal.scope();
      (void)principal.Has(jobstream::auth::Role::kAdmin);
    }
  }
  // The same bytes as a presented credential.
  jobstream::auth::Authenticator open;
  (void)open.Authenticate(bytes);
  return 0;
}
