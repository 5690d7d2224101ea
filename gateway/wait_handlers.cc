// Waiting for a job's end without a stream: the long-poll (:wait) and the result resource
// that pollers come back to (202 + Retry-After until the job is finished).
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::gateway {
namespace {

const absl::Duration kDefaultWait = absl::Seconds(30);
const absl::Duration kMaxWait = absl::Minutes(5);

// The job's error as the body of the answer about its result.
Response JobError(const v1::Job& job) {
  const int code = job.error().code();
  const auto grpc_code = static_cast<grpc::StatusCode>(code >= 1 && code <= 16 ? code : 2);
  std::string body = ErrorJson(grpc_code, job.error().message());
  if (job.error().has_details() && !job.error().details().fields().empty()) {
    body.pop_back();  // the closing brace
    absl::StrAppend(&body, ",\"details\":", ToJson(job.error().details()), "}");
  }
  return Response{HttpStatusFor(grpc_code), std::move(body), "application/json",
                  {{"X-Jobstream-State", v1::Job::State_Name(job.state())}}};
}

// A result of the form {"artifact": "NAME"} naming one of the job's artifacts: that name.
std::optional<std::string> ResultArtifact(const v1::Job& job) {
  if (!job.result().has_struct_value()) return std::nullopt;
  const auto& fields = job.result().struct_value().fields();
  auto it = fields.find("artifact");
  if (fields.size() != 1 || it == fields.end() || !it->second.has_string_value()) {
    return std::nullopt;
  }
  for (const v1::Artifact& a : job.artifacts()) {
    if (a.name() == it->second.string_value()) return a.name();
  }
  return std::nullopt;
}

}  // namespace

void WaitJob(const SessionPtr& session, const Route& route) {
  absl::Duration timeout = kDefaultWait;
  if (auto text = route.Param("timeout")) {
    if (!absl::ParseDuration(*text, &timeout) || timeout < absl::ZeroDuration() ||
        timeout > kMaxWait) {
      return session->ReplyError(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("timeout must be a duration from 0s to 5m such as 30s, not \"",
                       text->substr(0, 40), "\""));
    }
  }
  // The call may take the whole timeout, and then some to answer.
  auto call = NewCall<v1::WaitJobRequest, v1::Job>(*session, timeout + session->gateway()->options().call_timeout);
  call->request.set_job_id(route.job_id);
  *call->request.mutable_timeout() = v1::ToProto(timeout);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->WaitJob(a...); },
          [s = session.get()](const v1::Job& job) { s->Reply({200, ToJson(job)}); });
}

void JobResult(const SessionPtr& session, const std::string& job_id) {
  auto call = NewCall<v1::GetStatusRequest, v1::Job>(*session);
  call->request.set_job_id(job_id);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->GetStatus(a...); },
          [s = session.get()](const v1::Job& job) {
            switch (job.state()) {
              case v1::Job::SUCCEEDED:
                if (auto name = ResultArtifact(job)) {
                  return s->Reply({303, "", "application/json",
                                   {{"Location", ArtifactPath(job.id(), *name)}}});
                }
                return s->Reply({200, ToJson(job.result())});
              case v1::Job::FAILED:
              case v1::Job::CANCELLED:
                return s->Reply(JobError(job));
              default:
                // Not yet: come back here after Retry-After (the job's progress is the body).
                return s->Reply({202, ToJson(job), "application/json",
                                 {{"Retry-After", absl::StrCat(RetryAfterSeconds(job, absl::Now()))},
                                  {"Location", JobPath(job.id()) + "/result"}}});
            }
          });
}

}  // namespace jobstream::gateway
