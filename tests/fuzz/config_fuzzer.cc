// ServerConfig files on hostile bytes: the JSON parse, then every rule the server checks
// before it serves (types, runners, durations, programs).
#include <cstddef>
#include <cstdint>

#include "server/jobs/job_types.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = jobstream::jobs::JobTypes::ParseConfig(
      absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (config.ok()) (void)jobstream::jobs::JobTypes::FromConfig(*config, {});
  return 0;
}
