// /v1/schedules: ScheduleService's calls as REST, bodies and answers as proto3 JSON.
//   GET /v1/schedules[?pageSize=&pageToken=]   POST /v1/schedules (a Schedule; 201)
//   GET|PUT|DELETE /v1/schedules/{id}           POST /v1/schedules/{id}:pause|:resume|:trigger
#include "absl/strings/str_cat.h"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"

namespace jobstream::gateway {
namespace {

std::string SchedulePath(const std::string& id) { return "/v1/schedules/" + id; }

// The request body as a Schedule, or nullopt after replying 400.
std::optional<v1::Schedule> BodySchedule(Session& session) {
  v1::Schedule schedule;
  if (absl::Status s = FromJson(absl::string_view(session.request().body()), &schedule);
      !s.ok()) {
    session.ReplyError(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
    return std::nullopt;
  }
  return schedule;
}

template <typename Req, typename Issue>
void ReplySchedule(const SessionPtr& session, Req request, Issue issue, int status = 200) {
  auto call = NewCall<Req, v1::Schedule>(*session);
  call->request = std::move(request);
  Forward(session, call, issue, [s = session.get(), status](const v1::Schedule& schedule) {
    Response response{status, ToJson(schedule)};
    if (status == 201) response.headers.emplace_back("Location", SchedulePath(schedule.id()));
    s->Reply(std::move(response));
  });
}

}  // namespace

void ScheduleRoute(const SessionPtr& session, const Route& route) {
  auto* stub = session->gateway()->schedule_stub();
  switch (route.kind) {
    case RouteKind::kListSchedules: {
      auto call = NewCall<v1::ListSchedulesRequest, v1::ListSchedulesResponse>(*session);
      std::optional<int> page_size = PageSizeParam(*session, route);
      if (!page_size) return;
      call->request.set_page_size(*page_size);
      call->request.set_page_token(route.Param("pageToken").value_or(""));
      return Forward(session, call, [stub](auto... a) { stub->async()->ListSchedules(a...); },
                     [s = session.get()](const auto& r) { s->Reply({200, ToJson(r)}); });
    }
    case RouteKind::kCreateSchedule: {
      auto schedule = BodySchedule(*session);
      if (!schedule) return;
      v1::CreateScheduleRequest request;
      request.set_paused(schedule->paused());  // the one output field a create may set
      *request.mutable_schedule() = *std::move(schedule);
      return ReplySchedule(
          session, std::move(request),
          [stub](auto... a) { stub->async()->CreateSchedule(a...); }, 201);
    }
    case RouteKind::kGetSchedule: {
      v1::GetScheduleRequest request;
      request.set_id(route.schedule_id);
      return ReplySchedule(session, std::move(request),
                           [stub](auto... a) { stub->async()->GetSchedule(a...); });
    }
    case RouteKind::kUpdateSchedule: {
      auto schedule = BodySchedule(*session);
      if (!schedule) return;
      if (!schedule->id().empty() && schedule->id() != route.schedule_id) {
        return session->ReplyError(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("the body's id \"", schedule->id().substr(0, 80),
                                                "\" is not the path's"));
      }
      schedule->set_id(route.schedule_id);
      v1::UpdateScheduleRequest request;
      *request.mutable_schedule() = *std::move(schedule);
      return ReplySchedule(session, std::move(request),
                           [stub](auto... a) { stub->async()->UpdateSchedule(a...); });
    }
    case RouteKind::kPauseSchedule: {
      v1::PauseScheduleRequest request;
      request.set_id(route.schedule_id);
      return ReplySchedule(session, std::move(request),
                           [stub](auto... a) { stub->async()->PauseSchedule(a...); });
    }
    case RouteKind::kResumeSchedule: {
      v1::ResumeScheduleRequest request;
      request.set_id(route.schedule_id);
      return ReplySchedule(session, std::move(request),
                           [stub](auto... a) { stub->async()->ResumeSchedule(a...); });
    }
    case RouteKind::kDeleteSchedule: {
      auto call = NewCall<v1::DeleteScheduleRequest, v1::DeleteScheduleResponse>(*session);
      call->request.set_id(route.schedule_id);
      return Forward(session, call, [stub](auto... a) { stub->async()->DeleteSchedule(a...); },
                     [s = session.get()](const auto&) { s->Reply({204}); });
    }
    case RouteKind::kTriggerSchedule: {
      auto call = NewCall<v1::TriggerScheduleRequest, v1::Job>(*session);
      call->request.set_id(route.schedule_id);
      return Forward(session, call, [stub](auto... a) { stub->async()->TriggerSchedule(a...); },
                     [s = session.get()](const v1::Job& job) {
                       s->Reply({202, ToJson(job), "application/json",
                                 {{"Location", JobPath(job.id())}}});
                     });
    }
    default:
      return session->ReplyError(grpc::StatusCode::INTERNAL, "not a schedule route");
  }
}

}  // namespace jobstream::gateway
