// The REST calls: each a unary call upstream, its answer as proto3 JSON.
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"
#include "gateway/web_assets.h"
#include "google/protobuf/util/time_util.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::gateway {

std::string JobPath(const std::string& job_id) { return "/v1/jobs/" + job_id; }

std::optional<int> PageSizeParam(Session& session, const Route& route) {
  int page_size = 0;
  if (auto size = route.Param("pageSize"); size && !absl::SimpleAtoi(*size, &page_size)) {
    session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT, "pageSize must be an integer");
    return std::nullopt;
  }
  return page_size;
}

namespace {

// A Submit's or SubmitBatch's body, with the Idempotency-Key header as its request id.
template <typename Request>
std::optional<Request> ParseWithIdempotencyKey(Session& session) {
  Request request;
  if (absl::Status s = FromJson(absl::string_view(session.request().body()), &request); !s.ok()) {
    session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
    return std::nullopt;
  }
  if (auto key = session.Header("Idempotency-Key")) {
    if (!request.request_id().empty() && request.request_id() != *key) {
      session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                         "the Idempotency-Key header and the body's requestId differ");
      return std::nullopt;
    }
    request.set_request_id(*key);
  }
  return request;
}

}  // namespace

std::optional<v1::SubmitRequest> ParseSubmit(Session& session) {
  return ParseWithIdempotencyKey<v1::SubmitRequest>(session);
}

void SubmitBatch(const SessionPtr& session) {
  auto call = NewCall<v1::SubmitBatchRequest, v1::SubmitBatchResponse>(*session);
  auto request = ParseWithIdempotencyKey<v1::SubmitBatchRequest>(*session);
  if (!request) return;
  call->request = *std::move(request);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->SubmitBatch(a...); },
          [s = session.get()](const v1::SubmitBatchResponse& batch) {
            s->Reply({202, ToJson(batch), "application/json",
                      {{"Location", JobPath(batch.parent().id())}}});
          });
}

void BulkJobs(const SessionPtr& session, RouteKind kind) {
  // Long: it changes every matching job, a page at a time.
  auto call = NewCall<v1::BulkRequest, v1::BulkResponse>(*session, absl::Minutes(10));
  if (!session->request().body().empty()) {
    if (absl::Status s = FromJson(absl::string_view(session->request().body()), &call->request);
        !s.ok()) {
      return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
    }
  }
  auto reply = [s = session.get()](const v1::BulkResponse& counts) {
    s->Reply({200, ToJson(counts)});
  };
  auto* stub = session->gateway()->stub();
  switch (kind) {
    case RouteKind::kBulkCancel:
      return Forward(session, call, [stub](auto... a) { stub->async()->BulkCancel(a...); }, reply);
    case RouteKind::kBulkRetry:
      return Forward(session, call, [stub](auto... a) { stub->async()->BulkRetry(a...); }, reply);
    default:
      return Forward(session, call, [stub](auto... a) { stub->async()->BulkDelete(a...); }, reply);
  }
}

void Submit(const SessionPtr& session) {
  auto call = NewCall<v1::SubmitRequest, v1::Job>(*session);
  auto request = ParseSubmit(*session);
  if (!request) return;
  call->request = *std::move(request);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->Submit(a...); },
          [s = session.get()](const v1::Job& job) {
            // 200: nothing was created, the job holding the unique_key is the answer.
            s->Reply({job.deduplicated() ? 200 : 202, ToJson(job), "application/json",
                      {{"Location", JobPath(job.id())}}});
          });
}

void GetJob(const SessionPtr& session, const std::string& job_id) {
  auto call = NewCall<v1::GetStatusRequest, v1::Job>(*session);
  call->request.set_job_id(job_id);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->GetStatus(a...); },
          [s = session.get()](const v1::Job& job) {
            Response response{200, ToJson(job)};
            // Pollers learn when asking again is worth it.
            if (!v1::IsFinished(job.state())) {
              response.headers.emplace_back(
                  "Retry-After", absl::StrCat(RetryAfterSeconds(job, absl::Now())));
            }
            s->Reply(std::move(response));
          });
}

void ListJobs(const SessionPtr& session, const Route& route) {
  auto call = NewCall<v1::ListJobsRequest, v1::ListJobsResponse>(*session);
  auto states = QueryStates(route);
  if (!states.ok()) {
    return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                               std::string(states.status().message()));
  }
  for (v1::Job::State state : *states) call->request.add_states(state);
  call->request.set_type(route.Param("type").value_or(""));
  auto labels = QueryLabels(route);
  if (!labels.ok()) {
    return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                               std::string(labels.status().message()));
  }
  call->request.mutable_labels()->insert(labels->begin(), labels->end());
  std::optional<int> page_size = PageSizeParam(*session, route);
  if (!page_size) return;
  call->request.set_page_size(*page_size);
  call->request.set_page_token(route.Param("pageToken").value_or(""));
  // A time range, as RFC 3339 times (protobuf's JSON form of a Timestamp).
  for (const char* name : {"createdAfter", "createdBefore"}) {
    auto value = route.Param(name);
    if (!value) continue;  // (asking for the field would set it)
    const bool after = absl::string_view(name) == "createdAfter";
    auto* field = after ? call->request.mutable_created_after()
                        : call->request.mutable_created_before();
    if (!google::protobuf::util::TimeUtil::FromString(*value, field)) {
      return session->ReplyError(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat(name, " must be an RFC 3339 time, e.g. 2026-12-07T09:30:00Z"));
    }
  }
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->ListJobs(a...); },
          [s = session.get()](const auto& response) { s->Reply({200, ToJson(response)}); });
}

void ListTypes(const SessionPtr& session) {
  auto call = NewCall<v1::ListJobTypesRequest, v1::ListJobTypesResponse>(*session);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->ListJobTypes(a...); },
          [s = session.get()](const auto& response) { s->Reply({200, ToJson(response)}); });
}

void JobStats(const SessionPtr& session) {
  auto call = NewCall<v1::GetJobStatsRequest, v1::JobStats>(*session);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->GetJobStats(a...); },
          [s = session.get()](const auto& response) { s->Reply({200, ToJson(response)}); });
}

void PauseType(const SessionPtr& session, const Route& route) {
  auto* stub = session->gateway()->stub();
  auto reply = [s = session.get()](const v1::JobTypeInfo& info) { s->Reply({200, ToJson(info)}); };
  if (route.kind == RouteKind::kResumeType) {
    auto call = NewCall<v1::ResumeTypeRequest, v1::JobTypeInfo>(*session);
    call->request.set_type(route.type);
    return Forward(session, call, [stub](auto... a) { stub->async()->ResumeType(a...); }, reply);
  }
  auto call = NewCall<v1::PauseTypeRequest, v1::JobTypeInfo>(*session);
  if (!session->request().body().empty()) {
    if (absl::Status s = FromJson(absl::string_view(session->request().body()), &call->request);
        !s.ok()) {
      return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
    }
    if (!call->request.type().empty() && call->request.type() != route.type) {
      return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                                 "the body's type is not the path's");
    }
  }
  call->request.set_type(route.type);
  Forward(session, call, [stub](auto... a) { stub->async()->PauseType(a...); }, reply);
}

namespace {

// An operator's call on a job: its JSON body (optional) is the request, whose jobId, if
// given, must be the path's. False once the error is answered.
template <typename Request>
bool ReadJobAction(Session& session, const std::string& job_id, Request& request) {
  if (!session.request().body().empty()) {
    if (absl::Status s = FromJson(absl::string_view(session.request().body()), &request);
        !s.ok()) {
      session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
      return false;
    }
    if (!request.job_id().empty() && request.job_id() != job_id) {
      session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT, "the body's jobId is not the path's");
      return false;
    }
  }
  request.set_job_id(job_id);
  return true;
}

}  // namespace

void CancelJob(const SessionPtr& session, const std::string& job_id) {
  auto call = NewCall<v1::CancelJobRequest, v1::Job>(*session);
  if (!ReadJobAction(*session, job_id, call->request)) return;
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->CancelJob(a...); },
          [s = session.get()](const auto& response) { s->Reply({200, ToJson(response)}); });
}

void RetryJob(const SessionPtr& session, const std::string& job_id) {
  auto call = NewCall<v1::RetryJobRequest, v1::Job>(*session);
  if (!ReadJobAction(*session, job_id, call->request)) return;
  // A replay queued a new job: 202, as a Submit answers.
  const bool as_new = call->request.as_new();
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->RetryJob(a...); },
          [s = session.get(), as_new](const auto& response) {
            s->Reply({as_new ? 202 : 200, ToJson(response)});
          });
}

void DeleteJob(const SessionPtr& session, const std::string& job_id) {
  auto call = NewCall<v1::DeleteJobRequest, v1::DeleteJobResponse>(*session);
  call->request.set_job_id(job_id);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->DeleteJob(a...); },
          [s = session.get()](const auto&) { s->Reply({204}); });
}

void Health(const SessionPtr& session) {
  // The server's own health check: it needs no token, and answers NOT_SERVING while the
  // server shuts down.
  auto call = NewCall<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>(
      *session, absl::Seconds(2));
  call->request.set_service("jobstream.v1.JobService");
  session->gateway()->health_stub()->async()->Check(
      &call->ctx, &call->request, &call->response, [session, call](grpc::Status status) {
        session->Post([s = session.get(), status, call] {
          if (status.ok() &&
              call->response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
            return s->Reply({200, R"({"status":"SERVING"})"});
          }
          s->Reply({503, ErrorJson(grpc::StatusCode::UNAVAILABLE,
                                   status.ok() ? "jobstream-server is not serving"
                                               : "jobstream-server is not answering: " +
                                                     status.error_message())});
        });
      });
}

void Asset(const SessionPtr& session, const std::string& path) {
  const WebAsset* asset = FindWebAsset(path);
  if (asset == nullptr) return session->ReplyError(grpc::StatusCode::NOT_FOUND, "no such file");
  session->Reply({200, std::string(reinterpret_cast<const char*>(asset->data), asset->size),
                  asset->content_type});
}

}  // namespace jobstream::gateway
