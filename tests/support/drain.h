// Reads a watch::Subscription the way a stream does: poll, and on kWait block until the
// hub's notify fires. Returns the events and the status the subscription ended with.
#pragma once

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/auth/tokens.h"
#include "server/watch/subscription.h"

namespace jobstream::testing {

// The scope of a caller that may see every tenant's jobs: the unit tests watch as it.
inline const auth::Scope kAll = auth::Scope::Everything();

struct Drained {
  std::vector<v1::JobEvent> events;
  absl::Status status;  // DeadlineExceeded if it had not ended within the timeout
  std::vector<int64_t> sequences() const {
    std::vector<int64_t> s;
    for (const auto& e : events) s.push_back(e.sequence());
    return s;
  }
};

inline Drained Drain(watch::Subscription& sub, absl::Duration timeout = absl::Seconds(20)) {
  struct Kick {
    absl::Mutex mu;
    bool kicked = false;
  };
  auto kick = std::make_shared<Kick>();
  sub.SetNotify([kick] {
    absl::MutexLock lock(&kick->mu);
    kick->kicked = true;
  });
  Drained out;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    watch::Subscription::Next next = sub.Poll();
    if (next.kind == watch::Subscription::Next::kSend) {
      out.events.push_back(next.event->event);
    } else if (next.kind == watch::Subscription::Next::kEnd) {
      out.status = next.status;
      break;
    } else {
      absl::MutexLock lock(&kick->mu);
      if (!kick->mu.AwaitWithDeadline(absl::Condition(&kick->kicked), deadline)) {
        out.status = absl::DeadlineExceededError("subscription did not end");
        break;
      }
      kick->kicked = false;
    }
  }
  sub.SetNotify(nullptr);
  return out;
}

}  // namespace jobstream::testing
