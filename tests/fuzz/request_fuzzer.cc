// The gateway's request path on hostile bytes: Beast's parser with the gateway's limits,
// then the route, the resume position (Last-Event-ID / ?after=), Range and If-None-Match,
// the credential (Authorization or the session cookie), and a JSON body read as a
// SubmitRequest. Nothing here may crash, hang or leak.
#include <cstddef>
#include <cstdint>

#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/http_mapping.h"
#include "gateway/routes.h"
#include "jobstream/v1/jobs.pb.h"

namespace http = boost::beast::http;
using namespace jobstream::gateway;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The body of a Submit, alone.
  jobstream::v1::SubmitRequest request;
  (void)FromJson(bytes, &request);
  // A whole request, as a connection would read it.
  http::request_parser<http::string_body> parser;
  parser.body_limit((1 << 20) + (64 << 10));
  parser.header_limit(16 << 10);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_header_done()) return 0;
  const auto& req = parser.get();
  auto route = ParseRoute(absl::string_view(req.method_string().data(), req.method_string().size()),
                          absl::string_view(req.target().data(), req.target().size()));
  auto header = [&](boost::beast::string_view name) -> std::optional<absl::string_view> {
    auto it = req.find(name);
    if (it == req.end()) return std::nullopt;
    return absl::string_view(it->value().data(), it->value().size());
  };
  std::optional<std::string> after;
  if (auto* r = std::get_if<Route>(&route)) {
    after = r->Param("after");
    (void)ArtifactPath(r->job_id, r->artifact);
    (void)ContentDisposition(true, r->artifact);
  }
  (void)ResumeAfter(header("Last-Event-ID"),
                    after ? std::optional<absl::string_view>(*after) : std::nullopt);
  (void)ParseRange(header("Range"), static_cast<int64_t>(size) * 1000);
  if (auto etag = header("If-None-Match")) (void)EtagMatches(*etag, "\"abc\"");
  // The credential: an Authorization header, or the session cookie.
  const Credential credential = RequestCredential(header("Authorization"), header("Cookie"));
  (void)IsCookieToken(credential.authorization);
  if (parser.is_done()) (void)FromJson(req.body(), &request);
  return 0;
}
