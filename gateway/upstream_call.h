// A unary call to jobstream-server on gRPC's callback API, answered on a session's strand.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "gateway/session.h"
#include "grpcpp/grpcpp.h"

namespace jobstream::gateway {

template <typename Req, typename Resp>
struct UnaryCall {
  grpc::ClientContext ctx;
  Req request;
  Resp response;
};

// Forwards the caller's credential (its token, or none) with an upstream call.
inline void AddCredential(grpc::ClientContext& ctx, const std::string& authorization) {
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
}

// The request's W3C `traceparent` header goes upstream as metadata: the server makes the
// job a span of the caller's trace (and ignores a malformed one, as W3C says). Only text
// gRPC carries as metadata is passed.
inline void AddTraceparent(grpc::ClientContext& ctx, const Session& session) {
  std::optional<std::string> traceparent = session.Header("traceparent");
  if (!traceparent || traceparent->empty() || traceparent->size() > 512) return;
  for (char c : *traceparent) {
    if (c < 0x20 || c > 0x7e) return;
  }
  ctx.AddMetadata("traceparent", *traceparent);
}

// A call on behalf of the session's request: its deadline, its caller's credential and
// trace context.
template <typename Req, typename Resp>
std::shared_ptr<UnaryCall<Req, Resp>> NewCall(const Session& session, absl::Duration timeout) {
  auto call = std::make_shared<UnaryCall<Req, Resp>>();
  call->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  AddCredential(call->ctx, session.credential().authorization);
  AddTraceparent(call->ctx, session);
  return call;
}
template <typename Req, typename Resp>
std::shared_ptr<UnaryCall<Req, Resp>> NewCall(const Session& session) {
  return NewCall<Req, Resp>(session, session.gateway()->options().call_timeout);
}

// The server's hint of when to try again (trailing metadata "retry-after", in seconds).
inline std::string RetryAfterOf(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after");
  if (it == trailers.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// Issues the call (issue(ctx, request, response, callback)); on success runs
// on_ok(response) on the session's strand, else replies with the mapped error.
template <typename Call, typename Issue, typename OnOk>
void Forward(const SessionPtr& session, std::shared_ptr<Call> call, Issue issue, OnOk on_ok) {
  issue(&call->ctx, &call->request, &call->response, [session, call, on_ok](grpc::Status s) {
    session->Post([s = session.get(), call, status = std::move(s), on_ok] {
      if (!status.ok()) return s->ReplyStatus(status, RetryAfterOf(call->ctx));
      on_ok(call->response);
    });
  });
}

}  // namespace jobstream::gateway
