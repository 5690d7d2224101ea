#include "server/auth/tokens.h"

#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/auth_config.h"

namespace jobstream::auth {

absl::string_view RoleName(Role role) {
  for (size_t i = 0; i < std::size(v1::kAuthRoles); ++i) {
    if (static_cast<uint8_t>(role) == 1 << i) return v1::kAuthRoles[i];
  }
  return "?";
}

Principal Principal::Open() {
  Principal p;
  p.roles = static_cast<uint8_t>(Role::kSubmit) | static_cast<uint8_t>(Role::kRead) |
            static_cast<uint8_t>(Role::kWork) | static_cast<uint8_t>(Role::kAdmin);
  return p;
}

absl::StatusOr<TokenTable> ParseTokenFile(absl::string_view json) {
  auto config = v1::ParseAuthConfig(json);
  if (!config.ok()) return config.status();
  TokenTable table;
  for (const v1::AuthToken& token : config->tokens()) {
    Principal principal{token.name(), token.tenant(), 0};
    for (const std::string& role : token.roles()) {
      for (size_t i = 0; i < std::size(v1::kAuthRoles); ++i) {
        if (role == v1::kAuthRoles[i]) principal.roles |= 1 << i;  // known: ParseAuthConfig
      }
    }
    table.emplace(token.sha256(), std::move(principal));
  }
  return table;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Load(const std::string& path) {
  auto auth = std::make_unique<Authenticator>();
  auth->path_ = path;
  if (absl::Status s = auth->Reload(); !s.ok()) return s;
  return auth;
}

size_t Authenticator::tokens() const {
  absl::MutexLock lock(&mu_);
  return table_ ? table_->size() : 0;
}

absl::Status Authenticator::Reload() {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --auth_tokens file ", path_));
  std::stringstream text;
  text << in.rdbuf();
  auto table = ParseTokenFile(text.str());
  if (!table.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens file ", path_, ": ", table.status().message()));
  }
  auto shared = std::make_shared<const TokenTable>(*std::move(table));
  absl::MutexLock lock(&mu_);
  table_ = std::move(shared);
  known_.clear();
  return absl::OkStatus();
}

absl::StatusOr<Principal> Authenticator::Authenticate(absl::string_view authorization) const {
  if (!enabled()) return Principal::Open();
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "this server needs a token: send \"authorization: Bearer <token>\"");
  }
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError("authorization must be \"Bearer <token>\"");
  }
  token = absl::StripAsciiWhitespace(token);
  if (token.empty()) return absl::UnauthenticatedError("authorization has an empty token");
  std::shared_ptr<const TokenTable> table;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto known = known_.find(token); known != known_.end()) return known->second;
    table = table_;
  }
  v1::Sha256 digest;
  digest.Update(token);
  auto it = table->find(digest.HexDigest());
  if (it == table->end()) {
    return absl::UnauthenticatedError("the token is not one this server knows");
  }
  absl::MutexLock lock(&mu_);
  if (table_ == table) {  // not read again meanwhile
    if (known_.size() >= 10000) known_.clear();
    known_.emplace(std::string(token), it->second);
  }
  return it->second;
}

}  // namespace jobstream::auth
