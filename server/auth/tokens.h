// Bearer tokens: the --auth_tokens file (AuthConfig in config.proto) and what a presented
// token is allowed. The file holds each token's sha256, never the token; a presented
// token is hashed and looked up. The table can be swapped while calls read it (SIGHUP).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/scope.h"

namespace jobstream::auth {

// Each role's bit is 1 << its place in v1::kAuthRoles (submit, read, work, admin, metrics).
enum class Role : uint8_t { kSubmit = 1, kRead = 2, kWork = 4, kAdmin = 8, kMetrics = 16 };
absl::string_view RoleName(Role role);

// Who a call comes from.
struct Principal {
  std::string name;    // the token's name; empty on an open server
  std::string tenant;  // empty on an open server
  uint8_t roles = 0;   // Role bits

  // Presented a token (an open server's caller has no name).
  bool authenticated() const { return !name.empty(); }
  // An admin has every role.
  bool Has(Role role) const {
    return (roles & (static_cast<uint8_t>(role) | static_cast<uint8_t>(Role::kAdmin))) != 0;
  }
  Scope scope() const {
    return Has(Role::kAdmin) ? Scope{tenant, true} : Scope::Tenant(tenant);
  }
  // Anyone, on a server without tokens.
  static Principal Open();
};

// sha256 (hex) of a token -> who holds it.
using TokenTable = absl::flat_hash_map<std::string, Principal>;

// Parses and checks an AuthConfig JSON text (v1::ParseAuthConfig) into a table.
absl::StatusOr<TokenTable> ParseTokenFile(absl::string_view json);

class Authenticator {
 public:
  // A server without tokens: everyone is Principal::Open().
  Authenticator() = default;
  // Reads `path`; an error names the file and what is wrong in it.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Load(const std::string& path);

  bool enabled() const { return !path_.empty(); }
  size_t tokens() const ABSL_LOCKS_EXCLUDED(mu_);
  // Reads the file again; on error the tokens in force stay.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // Who presents `authorization` (the metadata or header value, "Bearer <token>"; empty if
  // none was sent). UNAUTHENTICATED without a known token.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  // Tokens seen lately -> who, so a busy client is not hashed on every call. Emptied when
  // the file is read again (a removed token stops at once) and when it grows large.
  mutable absl::flat_hash_map<std::string, Principal> known_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jobstream::auth
