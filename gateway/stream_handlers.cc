// Server-Sent Events: one job's events (a shared JobFeed per job), many jobs' events
// (a shared EventsFeed per filter), and a submit answered with the new job's stream.
#include "absl/strings/str_cat.h"
#include "gateway/events_feed.h"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::gateway {
namespace {

// Streams the job's events after `after` — once GetStatus has said the job exists (so an
// unknown job is a 404) and that there is something left to send (a finished job read
// to its end is a 204, which tells EventSource to stop).
void StreamJob(const SessionPtr& session, const v1::Job& job, int64_t after, Headers headers) {
  if (v1::IsFinished(job.state()) && after >= job.last_sequence()) {
    return session->Reply({204, "", "application/json", std::move(headers)});
  }
  if (after > job.last_sequence()) {
    return session->ReplyError(grpc::StatusCode::OUT_OF_RANGE,
                               absl::StrCat("after ", after, " is beyond job ", job.id(),
                                            "'s last sequence ", job.last_sequence()));
  }
  session->BeginSse(after, /*many_jobs=*/false, std::move(headers));
  std::shared_ptr<JobFeed> feed = session->gateway()->JoinFeed(
      session->credential().authorization, job.id(), after, session);
  session->SetLeave([feed, s = session.get()] { feed->Leave(s); });
}

// Where a stream resumes: Last-Event-ID, else ?after=, else from the start.
std::optional<int64_t> ResumePoint(Session& session, std::optional<std::string> after_param) {
  std::optional<std::string> last_event_id = session.Header("Last-Event-ID");
  auto after = ResumeAfter(last_event_id ? std::optional<absl::string_view>(*last_event_id)
                                         : std::nullopt,
                           after_param ? std::optional<absl::string_view>(*after_param)
                                       : std::nullopt);
  if (!after.ok()) {
    session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(after.status().message()));
    return std::nullopt;
  }
  return after->value_or(0);
}

}  // namespace

void JobEvents(const SessionPtr& session, const Route& route) {
  std::optional<int64_t> after = ResumePoint(*session, route.Param("after"));
  if (!after) return;
  auto call = NewCall<v1::GetStatusRequest, v1::Job>(*session);
  call->request.set_job_id(route.job_id);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->GetStatus(a...); },
          [session, after = *after](const v1::Job& job) { StreamJob(session, job, after, {}); });
}

void SubmitAndStream(const SessionPtr& session) {
  // A retry with the same Idempotency-Key gets the same job, and with Last-Event-ID
  // resumes its stream where the broken one stopped.
  std::optional<int64_t> after = ResumePoint(*session, std::nullopt);
  if (!after) return;
  auto request = ParseSubmit(*session);
  if (!request) return;
  auto call = NewCall<v1::SubmitRequest, v1::Job>(*session);
  call->request = *std::move(request);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->Submit(a...); },
          [session, after = *after](const v1::Job& job) {
            StreamJob(session, job, after, {{"Location", JobPath(job.id())}});
          });
}

void AllEvents(const SessionPtr& session, const Route& route) {
  auto request = QueryWatchFilter(route);
  if (!request.ok()) {
    return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                               std::string(request.status().message()));
  }
  // The shared stream for this filter answers once the server has accepted the filter:
  // a bad one is a 400 before any stream starts.
  session->gateway()->JoinEventsFeed(session->credential().authorization, *request, session);
}

}  // namespace jobstream::gateway
