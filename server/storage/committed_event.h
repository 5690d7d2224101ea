// CommittedEvent: one durable event as watchers receive it — parsed, for filtering and
// snapshots, and in wire form, serialized once and sent as is to every watcher. Shared
// immutably (CommittedEventPtr) between the committer, the hub and every watcher's queue.
#pragma once

#include <memory>
#include <string>

#include "jobstream/v1/jobs.pb.h"

namespace jobstream::storage {

struct CommittedEvent {
  v1::JobEvent event;
  std::string wire;  // event.SerializeAsString()
};
using CommittedEventPtr = std::shared_ptr<const CommittedEvent>;

inline CommittedEventPtr MakeCommittedEvent(v1::JobEvent event) {
  auto committed = std::make_shared<CommittedEvent>();
  committed->wire = event.SerializeAsString();
  committed->event = std::move(event);
  return committed;
}

}  // namespace jobstream::storage
