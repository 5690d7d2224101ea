// WorkerService on the gRPC callback API: validates each call and hands it to the
// JobManager. LeaseJob long-polls without holding a thread, and gives its wait up when
// the caller goes away.
#pragma once

#include <optional>

#include "jobstream/v1/workers.grpc.pb.h"
#include "server/auth/tokens.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/job_types.h"
#include "server/rpc/call_tracker.h"

namespace jobstream::rpc {

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(jobs::JobBackend* manager, const jobs::JobTypes* types, CallTracker* calls,
                    const auth::Authenticator* auth)
      : manager_(manager), types_(types), calls_(calls), auth_(auth) {}

  grpc::ServerUnaryReactor* LeaseJob(grpc::CallbackServerContext* ctx,
                                     const v1::LeaseJobRequest* request,
                                     v1::LeaseJobResponse* response) override;
  grpc::ServerUnaryReactor* ReportProgress(grpc::CallbackServerContext* ctx,
                                           const v1::ReportProgressRequest* request,
                                           v1::ReportProgressResponse* response) override;
  grpc::ServerUnaryReactor* CompleteJob(grpc::CallbackServerContext* ctx,
                                        const v1::CompleteJobRequest* request,
                                        v1::Job* response) override;
  grpc::ServerUnaryReactor* FailJob(grpc::CallbackServerContext* ctx,
                                    const v1::FailJobRequest* request,
                                    v1::Job* response) override;
  grpc::ServerReadReactor<v1::UploadArtifactRequest>* UploadArtifact(
      grpc::CallbackServerContext* ctx, v1::Artifact* response) override;
  grpc::ServerUnaryReactor* ReleaseJob(grpc::CallbackServerContext* ctx,
                                       const v1::ReleaseJobRequest* request,
                                       v1::Job* response) override;
  grpc::ServerUnaryReactor* EndJobs(grpc::CallbackServerContext* ctx,
                                    const v1::EndJobsRequest* request,
                                    v1::EndJobsResponse* response) override;

 private:
  // Begins a call that needs the `work` role: the caller's scope, or nullopt once the
  // call has been refused (and answered).
  std::optional<auth::Scope> Begin(grpc::CallbackServerContext* ctx, absl::string_view method,
                                   grpc::ServerUnaryReactor** reactor);
  // Answers `reactor` with the job a manager call ends with.
  jobs::JobBackend::JobCallback Answer(grpc::ServerUnaryReactor* reactor, v1::Job* response);

  jobs::JobBackend* const manager_;
  const jobs::JobTypes* const types_;  // to check a LeaseJob whole before its endings
  CallTracker* const calls_;
  const auth::Authenticator* const auth_;
};

}  // namespace jobstream::rpc
