#include "server/rpc/health_service.h"

namespace jobstream::rpc {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream: the status at once, then NOT_SERVING at shutdown, then the end.
class HealthServiceImpl::Watcher : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  Watcher(HealthServiceImpl* service, HealthCheckResponse::ServingStatus status)
      : service_(service) {
    Send(status);
  }
  // Called with the service's lock held.
  void Send(HealthCheckResponse::ServingStatus status) {
    absl::MutexLock lock(&mu_);
    if (writing_) {
      next_ = status;
      return;
    }
    writing_ = true;
    response_.set_status(status);
    StartWrite(&response_);
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) return;  // the call is ending; OnCancel or OnDone follows
    if (next_ != HealthCheckResponse::UNKNOWN) {
      writing_ = true;
      response_.set_status(next_);
      next_ = HealthCheckResponse::UNKNOWN;
      StartWrite(&response_);
    } else if (response_.status() == HealthCheckResponse::NOT_SERVING && !finished_) {
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
    }
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (!finished_) {
      finished_ = true;
      Finish(grpc::Status::CANCELLED);
    }
  }
  void OnDone() override {
    service_->Remove(this);
    delete this;
  }

 private:
  HealthServiceImpl* const service_;
  absl::Mutex mu_;
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  HealthCheckResponse::ServingStatus next_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

HealthServiceImpl::HealthServiceImpl(std::set<std::string> services)
    : services_(std::move(services)) {}

HealthServiceImpl::~HealthServiceImpl() = default;

void HealthServiceImpl::Shutdown() {
  absl::MutexLock lock(&mu_);
  serving_ = false;
  for (Watcher* watcher : watchers_) watcher->Send(HealthCheckResponse::NOT_SERVING);
}

bool HealthServiceImpl::AwaitWatchersTold(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](std::set<Watcher*>* watchers) { return watchers->empty(); }, &watchers_),
      timeout);
}

void HealthServiceImpl::Remove(Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(watcher);
}

grpc::ServerUnaryReactor* HealthServiceImpl::Check(grpc::CallbackServerContext* ctx,
                                                   const HealthCheckRequest* request,
                                                   HealthCheckResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (!request->service().empty() && !services_.contains(request->service())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 "unknown service \"" + request->service().substr(0, 200) + "\""));
    return reactor;
  }
  absl::MutexLock lock(&mu_);
  response->set_status(serving_ ? HealthCheckResponse::SERVING
                                : HealthCheckResponse::NOT_SERVING);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthServiceImpl::Watch(
    grpc::CallbackServerContext* ctx, const HealthCheckRequest* request) {
  absl::MutexLock lock(&mu_);
  HealthCheckResponse::ServingStatus status =
      !request->service().empty() && !services_.contains(request->service())
          ? HealthCheckResponse::SERVICE_UNKNOWN
          : (serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
  auto* watcher = new Watcher(this, status);
  watchers_.insert(watcher);
  return watcher;
}

}  // namespace jobstream::rpc
