#include "server/rpc/watch_reactor.h"

#include "server/metrics/server_metrics.h"
#include "server/rpc/status.h"

namespace jobstream::rpc {
namespace {

// A ByteBuffer over the event's wire bytes, holding a reference instead of copying them.
grpc::ByteBuffer WireBuffer(storage::CommittedEventPtr event) {
  auto* holder = new storage::CommittedEventPtr(std::move(event));
  grpc::Slice slice(const_cast<char*>((*holder)->wire.data()), (*holder)->wire.size(),
                    [](void* p) { delete static_cast<storage::CommittedEventPtr*>(p); }, holder);
  return grpc::ByteBuffer(&slice, 1);
}

class FailedStream : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedStream(const absl::Status& status) { Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchReactor::Fail(const absl::Status& status) {
  return new FailedStream(status);
}

WatchReactor* WatchReactor::Start(watch::EventHub* hub, std::shared_ptr<watch::Subscription> sub) {
  auto* reactor = new WatchReactor(hub, std::move(sub));
  reactor->self_.reset(reactor);
  std::weak_ptr<WatchReactor> weak = reactor->self_;
  reactor->sub_->SetNotify([weak] {
    if (auto strong = weak.lock()) strong->Pump();
  });
  // The request is accepted: say so now, so a client (the gateway) can tell a good
  // filter from a bad one before any event comes.
  reactor->StartSendInitialMetadata();
  reactor->Pump();
  return reactor;
}

WatchReactor::WatchReactor(watch::EventHub* hub, std::shared_ptr<watch::Subscription> sub)
    : hub_(hub), sub_(std::move(sub)) {}

void WatchReactor::Pump() {
  mu_.Lock();
  if (writing_ || finished_) {
    mu_.Unlock();
    return;
  }
  if (cancelled_) {
    finished_ = true;
    mu_.Unlock();
    Finish(grpc::Status::CANCELLED);
    return;
  }
  // Poll returns kWait only after arming the notify, so an event published meanwhile
  // calls Pump again (which waits for this lock, then finds it).
  watch::Subscription::Next next = sub_->Poll();
  switch (next.kind) {
    case watch::Subscription::Next::kSend:
      current_ = WireBuffer(std::move(next.event));
      writing_ = true;
      if (!sent_any_) {
        sent_any_ = true;
        server_metrics::ObserveFirstEvent(absl::Now() - opened_);
      }
      mu_.Unlock();
      StartWrite(&current_);
      return;
    case watch::Subscription::Next::kWait:
      mu_.Unlock();
      return;
    case watch::Subscription::Next::kEnd:
      finished_ = true;
      mu_.Unlock();
      Finish(ToGrpc(next.status));
      return;
  }
}

void WatchReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) cancelled_ = true;  // the client went away
  }
  Pump();
}

void WatchReactor::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  Pump();
}

void WatchReactor::OnDone() {
  hub_->Unsubscribe(sub_);
  sub_->SetNotify(nullptr);
  self_.reset();  // may delete this; nothing below touches members
}

}  // namespace jobstream::rpc
