// Job ids: 26 characters of lower-case Crockford base32 encoding 48 bits of Unix
// milliseconds then 80 random bits (a ULID). They sort by creation time, are safe in
// URLs and file names, and have a fixed length, so they prefix storage keys cleanly.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace jobstream::jobs {

inline constexpr size_t kJobIdLength = 26;
// Lower-case Crockford base32: no i, l, o or u. Lease ids use it too.
inline constexpr char kIdAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

// A new id, strictly greater than every id this process made before.
std::string NewJobId(absl::Time now);

// OK if `id` is well-formed; INVALID_ARGUMENT saying what is wrong otherwise.
absl::Status ValidateJobId(absl::string_view id);

}  // namespace jobstream::jobs
