// The --auth_tokens file (AuthConfig in config.proto): parsed and checked here, where
// both the server (which loads it) and the CLI (`jobstream token`, which writes entries)
// can reach it.
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "jobstream/v1/config.pb.h"

namespace jobstream::v1 {

// The roles a token may hold, as the file spells them.
inline constexpr absl::string_view kAuthRoles[] = {"submit", "read", "work", "admin", "metrics"};

// Parses proto3 JSON and checks it: every field known, each sha256 64 lower-case hex
// digits and listed once, names and tenants well formed, roles known and at least one.
// INVALID_ARGUMENT says which token and what is wrong.
absl::StatusOr<AuthConfig> ParseAuthConfig(absl::string_view json);

}  // namespace jobstream::v1
