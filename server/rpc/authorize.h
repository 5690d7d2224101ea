// Who may make a call: the bearer token in the call's `authorization` metadata, checked
// against the role the method needs (see jobs.proto). On a server without --auth_tokens
// everyone is Principal::Open().
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "server/auth/tokens.h"

namespace jobstream::rpc {

inline absl::StatusOr<auth::Principal> Authorize(const auth::Authenticator& authenticator,
                                                 const grpc::ServerContextBase& ctx,
                                                 auth::Role role, absl::string_view method) {
  if (!authenticator.enabled()) return auth::Principal::Open();
  absl::string_view authorization;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  auto principal = authenticator.Authenticate(authorization);
  if (!principal.ok()) return principal.status();
  if (!principal->Has(role)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token \"", principal->name, "\" lacks the \"", auth::RoleName(role), "\" role, which ",
        method, " needs"));
  }
  return principal;
}

}  // namespace jobstream::rpc
