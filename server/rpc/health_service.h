// grpc.health.v1.Health from our own copy of health.proto, so that server reflection can
// describe it and grpcurl can call it (gRPC's built-in one carries no descriptor). The
// whole server ("") and each of its services report SERVING until shutdown begins, then
// NOT_SERVING; Watch streams that change.
#pragma once

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace jobstream::rpc {

class HealthServiceImpl final : public grpc::health::v1::Health::CallbackService {
 public:
  // `services`: the names Check answers for besides "".
  explicit HealthServiceImpl(std::set<std::string> services);
  ~HealthServiceImpl() override;

  // From now on every service is NOT_SERVING; watchers are told, and their streams end.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);
  // After Shutdown: waits (up to `timeout`, for a client that does not read) until every
  // watcher has been sent NOT_SERVING and its stream has ended, so that a server shutdown
  // that follows cannot cut the news off. True if they all have.
  bool AwaitWatchersTold(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* ctx,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class Watcher;
  void Remove(Watcher* watcher) ABSL_LOCKS_EXCLUDED(mu_);

  const std::set<std::string> services_;
  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jobstream::rpc
