// Artifact facts shared by the server, the client and the gateway: which names and
// content types are acceptable, the content type a file name suggests, and SHA-256 as
// lower-case hex (an artifact's checksum and ETag).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace jobstream::v1 {

inline constexpr size_t kMaxArtifactName = 255;

// A plain file name: 1..255 bytes of valid UTF-8, no '/', '\\', NUL or other control
// characters, not "." or "..". INVALID_ARGUMENT says which rule it breaks.
absl::Status ValidateArtifactName(absl::string_view name);

// A media type "type/subtype" with optional "; key=value" parameters, printable ASCII,
// at most 255 bytes.
absl::Status ValidateContentType(absl::string_view content_type);

// The media type a name's extension suggests ("report.pdf" -> "application/pdf");
// application/octet-stream when it suggests none.
std::string GuessContentType(absl::string_view name);

// Streaming SHA-256 (OpenSSL), hex-encoded when done.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(absl::string_view data);
  std::string HexDigest();  // once

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// A lower-case hex SHA-256: 64 characters of [0-9a-f].
bool IsSha256Hex(absl::string_view s);

}  // namespace jobstream::v1
