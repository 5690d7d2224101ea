// Scheduler: the thread that fires schedules. Every tick, if this server leads (always on
// RocksDB; on PostgreSQL the holder of the schedules lock, so one server fires and
// another takes over within a tick or two of its death), it fires what is due.
#pragma once

#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/schedules/schedule_manager.h"

namespace jobstream::schedules {

class Scheduler {
 public:
  Scheduler(ScheduleManager* manager, std::function<bool()> leading,
            absl::Duration tick = absl::Milliseconds(100))
      : manager_(manager), leading_(std::move(leading)), tick_(tick) {}
  ~Scheduler() { Stop(); }

  void Start();
  // Waits for a fire under way to end.
  void Stop();

 private:
  void Loop();

  ScheduleManager* const manager_;
  const std::function<bool()> leading_;
  const absl::Duration tick_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace jobstream::schedules
