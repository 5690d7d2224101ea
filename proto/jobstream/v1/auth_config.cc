#include "jobstream/v1/auth_config.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "jobstream/v1/artifacts.h"

namespace jobstream::v1 {
namespace {

std::string Shown(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, 64)), s.size() > 64 ? "…" : "", "\"");
}

bool IsName(absl::string_view s, bool upper_and_at) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    const bool ok = absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' ||
                    c == '-' || (upper_and_at && (absl::ascii_isupper(c) || c == '@'));
    if (!ok) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<AuthConfig> ParseAuthConfig(absl::string_view json) {
  AuthConfig config;
  auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &config);
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.message().as_string());
  std::set<std::string> seen;
  for (int i = 0; i < config.tokens_size(); ++i) {
    const AuthToken& token = config.tokens(i);
    const std::string where = absl::StrCat("tokens[", i, "]");
    if (!IsSha256Hex(token.sha256())) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".sha256 ", Shown(token.sha256()),
          " is not 64 lower-case hex digits (printf %s \"$TOKEN\" | sha256sum)"));
    }
    if (!IsName(token.name(), true)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".name ", Shown(token.name()),
          " must be 1 to 64 characters of A-Z a-z 0-9 . _ - @"));
    }
    const std::string who = absl::StrCat(where, " (", token.name(), ")");
    if (!IsName(token.tenant(), false)) {
      return absl::InvalidArgumentError(absl::StrCat(
          who, ".tenant ", Shown(token.tenant()), " must be 1 to 64 characters of a-z 0-9 . _ -"));
    }
    if (token.roles().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, " has no roles; give it some of submit, read, work, admin, metrics"));
    }
    for (const std::string& role : token.roles()) {
      bool known = false;
      for (absl::string_view r : kAuthRoles) known = known || role == r;
      if (!known) {
        return absl::InvalidArgumentError(absl::StrCat(
            who, " has role ", Shown(role), "; the roles are submit, read, work, admin and metrics"));
      }
    }
    if (!seen.insert(token.sha256()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, " repeats the sha256 of an earlier token"));
    }
  }
  return config;
}

}  // namespace jobstream::v1
