#include "server/webhooks/webhook_policy.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "boost/url/parse.hpp"

namespace jobstream::webhooks {
namespace {

constexpr size_t kMaxUrl = 2048;
constexpr int kMaxEvents = 16;

bool ValidPort(absl::string_view port) {
  int n = 0;
  return !port.empty() && port.size() <= 5 && absl::SimpleAtoi(port, &n) && n > 0 && n <= 65535;
}

}  // namespace

absl::StatusOr<WebhookPolicy> WebhookPolicy::Parse(const std::vector<std::string>& allow) {
  WebhookPolicy policy;
  for (const std::string& item : allow) {
    if (item.empty()) continue;
    // Parsed as a URL authority, so "[::1]:8080" and "example.com" both work.
    auto authority = boost::urls::parse_authority(item);
    if (!authority || authority->has_userinfo() || authority->host().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--webhook_allow: \"", item, "\" is not host or host:port"));
    }
    Entry entry;
    entry.host = absl::AsciiStrToLower(std::string(authority->host_name().empty()
                                                       ? authority->host_address()
                                                       : authority->host_name()));
    if (authority->has_port()) {
      entry.port = std::string(authority->port());
      if (!ValidPort(entry.port)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--webhook_allow: \"", item, "\" has a bad port"));
      }
    }
    policy.allow_.push_back(std::move(entry));
  }
  return policy;
}

absl::StatusOr<Target> WebhookPolicy::Check(absl::string_view url) const {
  if (!enabled()) {
    return absl::InvalidArgumentError(
        "this server delivers no webhooks: it was started without --webhook_allow");
  }
  if (url.size() > kMaxUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("webhook.url is ", url.size(), " bytes; the limit is ", kMaxUrl));
  }
  auto parsed = boost::urls::parse_absolute_uri(boost::core::string_view(url.data(), url.size()));
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat("webhook.url \"", url.substr(0, 100),
                                                   "\" is not an absolute URL"));
  }
  Target target;
  const std::string scheme = absl::AsciiStrToLower(std::string(parsed->scheme()));
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError("webhook.url must be http:// or https://");
  }
  target.tls = scheme == "https";
  if (parsed->has_userinfo()) {
    return absl::InvalidArgumentError("webhook.url must not carry a user or password");
  }
  if (parsed->has_fragment()) {
    return absl::InvalidArgumentError("webhook.url must not have a #fragment");
  }
  target.host = absl::AsciiStrToLower(std::string(
      parsed->host_name().empty() ? parsed->host_address() : parsed->host_name()));
  if (target.host.empty()) return absl::InvalidArgumentError("webhook.url has no host");
  target.port = std::string(parsed->has_port() ? absl::string_view(parsed->port().data(),
                                                                    parsed->port().size())
                                               : target.tls ? "443" : "80");
  if (!ValidPort(target.port)) return absl::InvalidArgumentError("webhook.url has a bad port");
  target.host_header = std::string(parsed->encoded_host_and_port());
  target.target = std::string(parsed->encoded_target());
  if (target.target.empty()) target.target.push_back('/');  // not = "/": GCC 12 -Wrestrict
  for (const Entry& entry : allow_) {
    if (entry.host == target.host && (entry.port.empty() || entry.port == target.port)) {
      return target;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "webhook.url: ", target.host, ":", target.port,
      " is not on this server's --webhook_allow list"));
}

absl::Status WebhookPolicy::Validate(const v1::Webhook& webhook) const {
  if (auto target = Check(webhook.url()); !target.ok()) return target.status();
  if (webhook.events_size() > kMaxEvents) {
    return absl::InvalidArgumentError("webhook.events names too many events");
  }
  static const char* const kDeliverable[] = {"created",   "waiting",  "queued",    "started",
                                             "step",      "artifact", "child",     "retrying",
                                             "succeeded", "failed",   "cancelled"};
  for (const std::string& name : webhook.events()) {
    if (name == "progress") {
      return absl::InvalidArgumentError(
          "webhook.events: progress is not delivered by webhook (watch a stream for it)");
    }
    bool known = false;
    for (const char* k : kDeliverable) known = known || name == k;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "webhook.events: \"", name.substr(0, 40), "\" is not one of ",
          absl::StrJoin(kDeliverable, ", ")));
    }
  }
  return absl::OkStatus();
}

}  // namespace jobstream::webhooks
