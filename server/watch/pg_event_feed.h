// PgEventFeed: brings every event committed to a PostgreSQL store — by this server or any
// other on the same database — to this server's hub, each job's in order, once. A
// connection of its own LISTENs on kEventsChannel; a notification names a job and the
// sequences one transaction committed, which are read from the events table (the truth)
// and published. A job's transactions commit one at a time (its row is their lock), and
// PostgreSQL delivers notifications in commit order, so the hub sees each job's events in
// sequence.
//
// If the connection breaks, notifications may be lost meanwhile: every watcher is ended
// UNAVAILABLE (each resumes from its last sequence, read from the table, so nothing is
// skipped), the hub forgets what it held, and once listening again it is seeded with the
// RUNNING jobs, as at start.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/storage/pg/connection.h"
#include "server/storage/pg/pg_store.h"
#include "server/watch/event_hub.h"

namespace jobstream::watch {

class PgEventFeed {
 public:
  // `store` and `hub` must outlive the feed.
  PgEventFeed(std::string url, const storage::pg::PgStore* store, EventHub* hub)
      : url_(std::move(url)), store_(store), hub_(hub) {}
  ~PgEventFeed() { Stop(); }

  // Also told of each event once it is published (before Start): the manager wakes its
  // runners with it.
  void SetObserver(std::function<void(const v1::JobEvent&)> observer) {
    observer_ = std::move(observer);
  }

  // Listens and seeds the hub, then follows on a thread of its own. Fails if PostgreSQL
  // cannot be reached now.
  absl::Status Start();
  void Stop();

  // How many times the connection was made again (for tests and metrics).
  int reconnects() const { return reconnects_.load(); }

 private:
  // Connects, LISTENs, and seeds the hub with the RUNNING jobs.
  absl::Status Listen();
  // Reads and publishes what the pending notifications name; false if the connection or
  // the store failed.
  bool Follow();
  void Run();

  const std::string url_;
  const storage::pg::PgStore* const store_;
  EventHub* const hub_;
  std::function<void(const v1::JobEvent&)> observer_;
  std::unique_ptr<storage::pg::PgConnection> conn_;  // the feed thread's, once started
  std::atomic<bool> stopping_{false};
  std::atomic<int> reconnects_{0};
  std::thread thread_;
};

}  // namespace jobstream::watch
