// JobService on the gRPC callback API: validates each call, hands it to the JobManager or
// EventHub, and converts the outcome. No thread is held per call or per stream.
#pragma once

#include "jobstream/v1/jobs.grpc.pb.h"
#include <optional>

#include "server/auth/rate_limiter.h"
#include "server/auth/tokens.h"
#include "server/jobs/job_backend.h"
#include "server/metrics/job_stats.h"
#include "server/rpc/call_tracker.h"
#include "server/watch/event_hub.h"

namespace jobstream::rpc {

// WatchJob and WatchJobs are raw methods: they send pre-serialized events.
class JobServiceImpl final
    : public v1::JobService::WithRawCallbackMethod_WatchJob<
          v1::JobService::WithRawCallbackMethod_WatchJobs<v1::JobService::CallbackService>> {
 public:
  // `auth` checks every call's token (see jobs.proto); all must outlive the service.
  // `submit_rate` (may be null) paces each token's Submits.
  JobServiceImpl(jobs::JobBackend* manager, watch::EventHub* hub, CallTracker* calls,
                 const auth::Authenticator* auth, auth::RateLimiter* submit_rate = nullptr)
      : manager_(manager), hub_(hub), calls_(calls), auth_(auth), submit_rate_(submit_rate) {}

  // What GetJobStats answers from (none: an empty history); set before serving.
  void set_stats(const server_metrics::JobStatsHistory* stats) { stats_ = stats; }

  grpc::ServerUnaryReactor* GetJobStats(grpc::CallbackServerContext* ctx,
                                        const v1::GetJobStatsRequest* request,
                                        v1::JobStats* response) override;
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* SubmitBatch(grpc::CallbackServerContext* ctx,
                                        const v1::SubmitBatchRequest* request,
                                        v1::SubmitBatchResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchJob(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchJobs(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* BulkCancel(grpc::CallbackServerContext* ctx,
                                       const v1::BulkRequest* request,
                                       v1::BulkResponse* response) override;
  grpc::ServerUnaryReactor* BulkRetry(grpc::CallbackServerContext* ctx,
                                      const v1::BulkRequest* request,
                                      v1::BulkResponse* response) override;
  grpc::ServerUnaryReactor* BulkDelete(grpc::CallbackServerContext* ctx,
                                       const v1::BulkRequest* request,
                                       v1::BulkResponse* response) override;
  // The three bulk calls: one thread each, as they read and write page after page.
  grpc::ServerUnaryReactor* Bulk(jobs::BulkOp op, const char* method,
                                 grpc::CallbackServerContext* ctx, const v1::BulkRequest* request,
                                 v1::BulkResponse* response);
  grpc::ServerUnaryReactor* RetryJob(grpc::CallbackServerContext* ctx,
                                     const v1::RetryJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerUnaryReactor* PurgeJobs(grpc::CallbackServerContext* ctx,
                                      const v1::PurgeJobsRequest* request,
                                      v1::PurgeJobsResponse* response) override;
  grpc::ServerUnaryReactor* WaitJob(grpc::CallbackServerContext* ctx,
                                    const v1::WaitJobRequest* request,
                                    v1::Job* response) override;
  grpc::ServerWriteReactor<v1::GetArtifactResponse>* GetArtifact(
      grpc::CallbackServerContext* ctx, const v1::GetArtifactRequest* request) override;
  grpc::ServerUnaryReactor* ListJobTypes(grpc::CallbackServerContext* ctx,
                                         const v1::ListJobTypesRequest* request,
                                         v1::ListJobTypesResponse* response) override;
  grpc::ServerUnaryReactor* PauseType(grpc::CallbackServerContext* ctx,
                                      const v1::PauseTypeRequest* request,
                                      v1::JobTypeInfo* response) override;
  grpc::ServerUnaryReactor* ResumeType(grpc::CallbackServerContext* ctx,
                                       const v1::ResumeTypeRequest* request,
                                       v1::JobTypeInfo* response) override;
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* ctx,
                                   const v1::WhoAmIRequest* request,
                                   v1::Identity* response) override;

 private:
  // Over the token's --max_submits_per_second: ends the call RESOURCE_EXHAUSTED (with a
  // retry-after) and says so.
  bool OverSubmitRate(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor,
                      const auth::Principal& who);
  // The caller, if it holds `role`; otherwise the call is answered with why not.
  std::optional<auth::Principal> Allow(grpc::CallbackServerContext* ctx,
                                       grpc::ServerUnaryReactor* reactor, auth::Role role,
                                       absl::string_view method);

  jobs::JobBackend* const manager_;
  watch::EventHub* const hub_;
  CallTracker* const calls_;
  const auth::Authenticator* const auth_;
  auth::RateLimiter* const submit_rate_;
  const server_metrics::JobStatsHistory* stats_ = nullptr;
};

}  // namespace jobstream::rpc
