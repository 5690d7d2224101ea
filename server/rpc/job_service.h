// JobService on the gRPC callback API: validates each call, hands it to the JobManager or
// EventHub, and converts the outcome. No thread is held per call or per stream.
#pragma once

#include <atomic>

#include "jobstream/v1/jobs.grpc.pb.h"
#include "server/jobs/job_manager.h"
#include "server/watch/event_hub.h"

namespace jobstream::rpc {

// WatchJob and WatchJobs are raw methods: they send pre-serialized events.
class JobServiceImpl final
    : public v1::JobService::WithRawCallbackMethod_WatchJob<
          v1::JobService::WithRawCallbackMethod_WatchJobs<v1::JobService::CallbackService>> {
 public:
  JobServiceImpl(jobs::JobManager* manager, watch::EventHub* hub)
      : manager_(manager), hub_(hub) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitRequest* request, v1::Job* response) override;
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
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerUnaryReactor* PurgeJobs(grpc::CallbackServerContext* ctx,
                                      const v1::PurgeJobsRequest* request,
                                      v1::PurgeJobsResponse* response) override;

 // Unary calls not yet finished. Shutdown waits for these rather than for gRPC's own
  // drain, which also waits for idle client connections to go away.
  int in_flight() const { return in_flight_.load(); }

 private:
  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* ctx);
  void End(grpc::ServerUnaryReactor* reactor, const absl::Status& status);
  template <typename T>
  void Reply(grpc::ServerUnaryReactor* reactor, T* response, absl::StatusOr<T> result);

  std::atomic<int> in_flight_{0};
  jobs::JobManager* const manager_;
  watch::EventHub* const hub_;
};

}  // namespace jobstream::rpc
