// WatchReactor: adapts a watch::Subscription to a gRPC server stream. One write in flight;
// the next event is taken from the subscription when it completes, or when the hub
// notifies that an idle subscription has something. Finish is called exactly once.
//
// The stream is raw: each event goes out as the bytes serialized once at commit, shared
// by every watcher, instead of being copied and serialized again per watcher.
//
// Lifetime: gRPC calls OnDone last; the reactor owns itself through self_ and a notify
// that races with OnDone holds a strong reference, so it never touches a freed reactor.
#pragma once

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/watch/event_hub.h"

namespace jobstream::rpc {

class WatchReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // Starts streaming `sub`, which `hub` handed out.
  static WatchReactor* Start(watch::EventHub* hub, std::shared_ptr<watch::Subscription> sub);
  // A stream that ends at once with `status`.
  static grpc::ServerWriteReactor<grpc::ByteBuffer>* Fail(const absl::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  WatchReactor(watch::EventHub* hub, std::shared_ptr<watch::Subscription> sub);
  void Pump() ABSL_LOCKS_EXCLUDED(mu_);

  watch::EventHub* const hub_;
  const std::shared_ptr<watch::Subscription> sub_;
  std::shared_ptr<WatchReactor> self_;

  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  const absl::Time opened_ = absl::Now();
  bool sent_any_ ABSL_GUARDED_BY(mu_) = false;  // for the first event's latency
  grpc::ByteBuffer current_;  // the event being written; stable until OnWriteDone
};

}  // namespace jobstream::rpc
