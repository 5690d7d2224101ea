// WebhookPolicy: which URLs a job's webhook may name. Only hosts on the server's
// --webhook_allow list (host, or host:port) are ever called, so a client can never make
// the server reach an address of its choosing; with no list, webhooks are refused.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::webhooks {

// A webhook URL taken apart, for the HTTP client.
struct Target {
  bool tls = false;
  std::string host;    // as in the URL (IPv6 without brackets)
  std::string port;    // explicit or the scheme's default
  std::string target;  // path and query, at least "/"
  std::string host_header;  // host[:port] as the URL gave it
};

class WebhookPolicy {
 public:
  // Entries "host" (any port) or "host:port"; INVALID_ARGUMENT names a bad one.
  static absl::StatusOr<WebhookPolicy> Parse(const std::vector<std::string>& allow);

  bool enabled() const { return !allow_.empty(); }
  // The URL taken apart, or INVALID_ARGUMENT: not http(s), malformed, or a host the list
  // does not allow.
  absl::StatusOr<Target> Check(absl::string_view url) const;
  // A SubmitRequest's webhook: its URL and its event names.
  absl::Status Validate(const v1::Webhook& webhook) const;

 private:
  struct Entry {
    std::string host;  // lower case
    std::string port;  // empty: any
  };
  std::vector<Entry> allow_;
};

}  // namespace jobstream::webhooks
