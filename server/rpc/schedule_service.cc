#include "server/rpc/schedule_service.h"

#include "server/rpc/authorize.h"
#include "server/rpc/status.h"

namespace jobstream::rpc {
namespace {

using auth::Role;

// Runs `call` for a caller holding `role`, putting its result in `response`.
template <typename Response, typename Call>
grpc::Status Serve(const auth::Authenticator& authenticator, grpc::ServerContext* ctx,
                   Role role, absl::string_view method, Response* response, Call call) {
  absl::StatusOr<auth::Principal> who = Authorize(authenticator, *ctx, role, method);
  if (!who.ok()) return ToGrpc(who.status());
  absl::StatusOr<Response> result = call(who->scope());
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ScheduleServiceImpl::CreateSchedule(grpc::ServerContext* ctx,
                                                 const v1::CreateScheduleRequest* request,
                                                 v1::Schedule* response) {
  return Serve(*auth_, ctx, Role::kSubmit, "CreateSchedule", response,
               [&](const auth::Scope& scope) { return manager_->Create(*request, scope); });
}

grpc::Status ScheduleServiceImpl::GetSchedule(grpc::ServerContext* ctx,
                                              const v1::GetScheduleRequest* request,
                                              v1::Schedule* response) {
  return Serve(*auth_, ctx, Role::kRead, "GetSchedule", response,
               [&](const auth::Scope& scope) { return manager_->Get(request->id(), scope); });
}

grpc::Status ScheduleServiceImpl::ListSchedules(grpc::ServerContext* ctx,
                                                const v1::ListSchedulesRequest* request,
                                                v1::ListSchedulesResponse* response) {
  return Serve(*auth_, ctx, Role::kRead, "ListSchedules", response,
               [&](const auth::Scope& scope) { return manager_->List(*request, scope); });
}

grpc::Status ScheduleServiceImpl::UpdateSchedule(grpc::ServerContext* ctx,
                                                 const v1::UpdateScheduleRequest* request,
                                                 v1::Schedule* response) {
  return Serve(*auth_, ctx, Role::kSubmit, "UpdateSchedule", response,
               [&](const auth::Scope& scope) { return manager_->Update(*request, scope); });
}

grpc::Status ScheduleServiceImpl::PauseSchedule(grpc::ServerContext* ctx,
                                                const v1::PauseScheduleRequest* request,
                                                v1::Schedule* response) {
  return Serve(*auth_, ctx, Role::kSubmit, "PauseSchedule", response,
               [&](const auth::Scope& scope) {
                 return manager_->SetPaused(request->id(), true, scope);
               });
}

grpc::Status ScheduleServiceImpl::ResumeSchedule(grpc::ServerContext* ctx,
                                                 const v1::ResumeScheduleRequest* request,
                                                 v1::Schedule* response) {
  return Serve(*auth_, ctx, Role::kSubmit, "ResumeSchedule", response,
               [&](const auth::Scope& scope) {
                 return manager_->SetPaused(request->id(), false, scope);
               });
}

grpc::Status ScheduleServiceImpl::DeleteSchedule(grpc::ServerContext* ctx,
                                                 const v1::DeleteScheduleRequest* request,
                                                 v1::DeleteScheduleResponse* response) {
  return Serve(*auth_, ctx, Role::kSubmit, "DeleteSchedule", response,
               [&](const auth::Scope& scope) -> absl::StatusOr<v1::DeleteScheduleResponse> {
                 absl::Status s = manager_->Delete(request->id(), scope);
                 if (!s.ok()) return s;
                 return v1::DeleteScheduleResponse();
               });
}

grpc::Status ScheduleServiceImpl::TriggerSchedule(grpc::ServerContext* ctx,
                                                  const v1::TriggerScheduleRequest* request,
                                                  v1::Job* response) {
  return Serve(*auth_, ctx, Role::kSubmit, "TriggerSchedule", response,
               [&](const auth::Scope& scope) { return manager_->Trigger(request->id(), scope); });
}

}  // namespace jobstream::rpc
