// UpstreamWatch: one WatchJob or WatchJobs call to jobstream-server on the gRPC callback
// API. Events and the final status go to callbacks on gRPC's threads; the owner posts
// them where it needs them. The owner keeps a WatchHandle to cancel the call; the handle stays safe to
// use after the call is over.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/jobs.grpc.pb.h"

namespace jobstream::gateway {

class UpstreamWatch;

class WatchHandle {
 public:
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class UpstreamWatch;
  absl::Mutex mu_;
  UpstreamWatch* watch_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class UpstreamWatch : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  using EventFn = std::function<void(const v1::JobEvent&)>;
  using DoneFn = std::function<void(const grpc::Status&)>;

  // Starts WatchJob(job_id, after); on_done is called exactly once, last.
  // `authorization` (if not empty) is sent as the call's metadata.
  static std::shared_ptr<WatchHandle> Start(v1::JobService::Stub* stub,
                                            const std::string& authorization,
                                            const std::string& job_id, int64_t after,
                                            EventFn on_event, DoneFn on_done);
  // Starts WatchJobs(request) the same way; on_started (if any) is called once the server
  // has accepted the request (its initial metadata arrived), before any event.
  static std::shared_ptr<WatchHandle> StartAll(v1::JobService::Stub* stub,
                                               const std::string& authorization,
                                               const v1::WatchJobsRequest& request,
                                               EventFn on_event, DoneFn on_done,
                                               std::function<void()> on_started = nullptr);

  void OnReadInitialMetadataDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  friend class WatchHandle;
  UpstreamWatch(std::shared_ptr<WatchHandle> handle, EventFn on_event, DoneFn on_done);
  // Registers with the handle and starts reading; `begin` issues the call itself.
  static std::shared_ptr<WatchHandle> Launch(
      EventFn on_event, DoneFn on_done,
      const std::function<void(UpstreamWatch*)>& begin);

  const std::shared_ptr<WatchHandle> handle_;
  const EventFn on_event_;
  const DoneFn on_done_;
  std::function<void()> on_started_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest request_;
  v1::WatchJobsRequest all_request_;
  v1::JobEvent event_;
};

}  // namespace jobstream::gateway
