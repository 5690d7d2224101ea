// The exec line protocol on hostile output: bytes in pieces of any size, lines of any
// length, JSON of any shape.
#include <cstddef>
#include <cstdint>

#include "server/exec/program.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  jobstream::exec::ProgramOptions options;
  options.max_line_bytes = 4096;  // small, so the over-long path is reached
  jobstream::exec::ProgramHooks hooks;
  int reports = 0;
  hooks.report = [&](const jobstream::v1::Progress&) { ++reports; };
  hooks.log = [](absl::string_view) {};
  jobstream::exec::ProgramOutput output(options, hooks);
  // The first byte picks how the rest is cut into reads.
  const size_t piece = size > 0 ? 1 + data[0] % 64 : 1;
  for (size_t at = size > 0 ? 1 : 0; at < size; at += piece) {
    output.Append(absl::string_view(reinterpret_cast<const char*>(data) + at,
                                    std::min(piece, size - at)));
  }
  output.Finish();
  return 0;
}
