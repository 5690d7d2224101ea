// Who may make a call: the bearer token in the call's `authorization` metadata, checked
// against the role the method needs (see jobs.proto). On a server without --auth_tokens
// everyone is Principal::Open().
#pragma once

#include <map>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "server/auth/tokens.h"

namespace jobstream::rpc {

// The `authorization` metadata a call carries; empty if none.
inline absl::string_view AuthorizationOf(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return "";
  return absl::string_view(it->second.data(), it->second.size());
}

// Who makes the call, if its token is known and holds `role`.
inline absl::StatusOr<auth::Principal> Authorize(const auth::Authenticator& authenticator,
                                                 const grpc::ServerContextBase& ctx,
                                                 auth::Role role, absl::string_view method) {
  auto principal = authenticator.Authenticate(AuthorizationOf(ctx.client_metadata()));
  if (!principal.ok()) return principal.status();
  if (!principal->Has(role)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token \"", principal->name, "\" lacks the \"", auth::RoleName(role), "\" role, which ",
        method, " needs"));
  }
  return principal;
}

}  // namespace jobstream::rpc
