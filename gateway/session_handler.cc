// /v1/session: a browser's token in an HttpOnly cookie. EventSource cannot send an
// Authorization header, and a token in a URL would land in logs and history; so the page
// posts the token once, the gateway checks it with the server (WhoAmI) and keeps it in a
// cookie that every later request (SSE included) presents, and that scripts cannot read.
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"
#include "google/protobuf/struct.pb.h"

namespace jobstream::gateway {
namespace {

// The token a POST /v1/session presents: its Authorization header, or {"token": "..."}.
std::optional<std::string> PostedToken(Session& session) {
  if (auto header = session.Header(boost::beast::http::field::authorization)) {
    absl::string_view value = *header;
    if (!absl::ConsumePrefix(&value, "Bearer ")) {
      session.ReplyError(grpc::StatusCode::UNAUTHENTICATED,
                         "Authorization must be \"Bearer <token>\"");
      return std::nullopt;
    }
    return std::string(absl::StripAsciiWhitespace(value));
  }
  google::protobuf::Struct body;
  if (absl::Status s = FromJson(session.request().body(), &body); !s.ok()) {
    session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                       "send {\"token\": \"...\"} or an Authorization header: " +
                           std::string(s.message()));
    return std::nullopt;
  }
  auto it = body.fields().find("token");
  if (it == body.fields().end() || !it->second.has_string_value() || body.fields().size() != 1) {
    session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                       "the body must be {\"token\": \"...\"} and nothing else");
    return std::nullopt;
  }
  return it->second.string_value();
}

void Login(const SessionPtr& session) {
  std::optional<std::string> token = PostedToken(*session);
  if (!token) return;
  if (!IsCookieToken(*token)) {
    return session->ReplyError(
        grpc::StatusCode::INVALID_ARGUMENT,
        "this token cannot be kept in a cookie (it must be 1 to 2048 characters of "
        "A-Z a-z 0-9 - . _ ~ + / = : ! *)");
  }
  auto call = NewCall<v1::WhoAmIRequest, v1::Identity>(*session);
  // Checked with the token posted, whatever else the request presents.
  call->ctx.AddMetadata("authorization", "Bearer " + *token);
  const Gateway& gateway = *session->gateway();
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->WhoAmI(a...); },
          [s = session.get(), token = *token, &gateway](const v1::Identity& identity) {
            Headers headers;
            if (identity.auth_required()) {  // an open server has nothing to keep
              headers.emplace_back("Set-Cookie",
                                   SessionCookie(token, gateway.options().session_max_age,
                                                 gateway.options().https()));
            }
            s->Reply({200, ToJson(identity), "application/json", std::move(headers)});
          });
}

}  // namespace

void SessionRoute(const SessionPtr& session, const Route& route) {
  switch (session->request().method()) {
    case boost::beast::http::verb::post: return Login(session);
    case boost::beast::http::verb::delete_: {
      const Gateway& gateway = *session->gateway();
      return session->Reply({204, "", "application/json",
                             {{"Set-Cookie", SessionCookie("", absl::ZeroDuration(),
                                                           gateway.options().https())}}});
    }
    default: {  // GET: who the request's credential says it is
      auto call = NewCall<v1::WhoAmIRequest, v1::Identity>(*session);
      Forward(session, call,
              [session](auto... a) { session->gateway()->stub()->async()->WhoAmI(a...); },
              [s = session.get()](const v1::Identity& identity) {
                s->Reply({200, ToJson(identity)});
              });
    }
  }
}

}  // namespace jobstream::gateway
