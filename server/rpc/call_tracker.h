// CallTracker: finishes unary calls and counts those not yet finished, across services.
// Shutdown waits for these rather than for gRPC's own drain, which also waits for idle
// client connections to go away.
#pragma once

#include <atomic>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/rpc/status.h"

namespace jobstream::rpc {

class CallTracker {
 public:
  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* ctx) {
    in_flight_.fetch_add(1);
    return ctx->DefaultReactor();
  }
  void End(grpc::ServerUnaryReactor* reactor, const absl::Status& status) {
    reactor->Finish(ToGrpc(status));
    in_flight_.fetch_sub(1);
  }
  // Finishes `reactor` with `result`, storing the value in `response` on success.
  template <typename T>
  void Reply(grpc::ServerUnaryReactor* reactor, T* response, absl::StatusOr<T> result) {
    if (result.ok()) *response = *std::move(result);
    End(reactor, result.status());
  }
  // For calls that finish their own reactor.
  void Enter() { in_flight_.fetch_add(1); }
  void Leave() { in_flight_.fetch_sub(1); }

  int in_flight() const { return in_flight_.load(); }

 private:
  std::atomic<int> in_flight_{0};
};

}  // namespace jobstream::rpc
