// ScheduleService: checks each call's token (submit to change, read to look) and hands
// the call to the ScheduleManager. Synchronous handlers: these calls are few, and each
// writes to the store and waits for it.
#pragma once

#include "jobstream/v1/schedules.grpc.pb.h"
#include "server/auth/tokens.h"
#include "server/schedules/schedule_manager.h"

namespace jobstream::rpc {

class ScheduleServiceImpl final : public v1::ScheduleService::Service {
 public:
  ScheduleServiceImpl(schedules::ScheduleManager* manager, const auth::Authenticator* auth)
      : manager_(manager), auth_(auth) {}

  grpc::Status CreateSchedule(grpc::ServerContext* ctx, const v1::CreateScheduleRequest* request,
                              v1::Schedule* response) override;
  grpc::Status GetSchedule(grpc::ServerContext* ctx, const v1::GetScheduleRequest* request,
                           v1::Schedule* response) override;
  grpc::Status ListSchedules(grpc::ServerContext* ctx, const v1::ListSchedulesRequest* request,
                             v1::ListSchedulesResponse* response) override;
  grpc::Status UpdateSchedule(grpc::ServerContext* ctx, const v1::UpdateScheduleRequest* request,
                              v1::Schedule* response) override;
  grpc::Status PauseSchedule(grpc::ServerContext* ctx, const v1::PauseScheduleRequest* request,
                             v1::Schedule* response) override;
  grpc::Status ResumeSchedule(grpc::ServerContext* ctx, const v1::ResumeScheduleRequest* request,
                              v1::Schedule* response) override;
  grpc::Status DeleteSchedule(grpc::ServerContext* ctx, const v1::DeleteScheduleRequest* request,
                              v1::DeleteScheduleResponse* response) override;
  grpc::Status TriggerSchedule(grpc::ServerContext* ctx, const v1::TriggerScheduleRequest* request,
                               v1::Job* response) override;

 private:
  schedules::ScheduleManager* const manager_;
  const auth::Authenticator* const auth_;
};

}  // namespace jobstream::rpc
