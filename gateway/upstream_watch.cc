#include "gateway/upstream_watch.h"

namespace jobstream::gateway {

void WatchHandle::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  // The watch cannot be deleted while mu_ is held: OnDone takes it first.
  if (watch_ != nullptr) watch_->ctx_.TryCancel();
}

std::shared_ptr<WatchHandle> UpstreamWatch::Launch(
    EventFn on_event, DoneFn on_done, const std::function<void(UpstreamWatch*)>& begin) {
  auto handle = std::make_shared<WatchHandle>();
  auto* watch = new UpstreamWatch(handle, std::move(on_event), std::move(on_done));
  {
    absl::MutexLock lock(&handle->mu_);
    handle->watch_ = watch;
  }
  begin(watch);
  watch->StartRead(&watch->event_);
  watch->StartCall();
  return handle;
}

std::shared_ptr<WatchHandle> UpstreamWatch::Start(v1::JobService::Stub* stub,
                                                  const std::string& authorization,
                                                  const std::string& job_id, int64_t after,
                                                  EventFn on_event, DoneFn on_done) {
  return Launch(std::move(on_event), std::move(on_done), [&](UpstreamWatch* watch) {
    if (!authorization.empty()) watch->ctx_.AddMetadata("authorization", authorization);
    watch->request_.set_job_id(job_id);
    watch->request_.set_after_sequence(after);
    stub->async()->WatchJob(&watch->ctx_, &watch->request_, watch);
  });
}

std::shared_ptr<WatchHandle> UpstreamWatch::StartAll(v1::JobService::Stub* stub,
                                                     const std::string& authorization,
                                                     const v1::WatchJobsRequest& request,
                                                     EventFn on_event, DoneFn on_done,
                                                     std::function<void()> on_started) {
  return Launch(std::move(on_event), std::move(on_done), [&](UpstreamWatch* watch) {
    if (!authorization.empty()) watch->ctx_.AddMetadata("authorization", authorization);
    watch->on_started_ = std::move(on_started);
    watch->all_request_ = request;
    stub->async()->WatchJobs(&watch->ctx_, &watch->all_request_, watch);
  });
}

UpstreamWatch::UpstreamWatch(std::shared_ptr<WatchHandle> handle, EventFn on_event,
                             DoneFn on_done)
    : handle_(std::move(handle)), on_event_(std::move(on_event)), on_done_(std::move(on_done)) {}

void UpstreamWatch::OnReadInitialMetadataDone(bool ok) {
  if (ok && on_started_) on_started_();
}

void UpstreamWatch::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  on_event_(event_);
  StartRead(&event_);
}

void UpstreamWatch::OnDone(const grpc::Status& status) {
  {
    absl::MutexLock lock(&handle_->mu_);
    handle_->watch_ = nullptr;
  }
  on_done_(status);
  delete this;
}

}  // namespace jobstream::gateway
