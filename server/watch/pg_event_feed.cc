#include "server/watch/pg_event_feed.h"

#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <iostream>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "jobstream/v1/job_states.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::watch {

using storage::pg::PgConnection;

absl::Status PgEventFeed::Start() {
  if (absl::Status s = Listen(); !s.ok()) return s;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "js-pg-feed");
    Run();
  });
  return absl::OkStatus();
}

void PgEventFeed::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

absl::Status PgEventFeed::Listen() {
  auto conn = PgConnection::Connect(url_);
  if (!conn.ok()) return conn.status();
  if (absl::Status s = (*conn)->ExecScript(
          absl::StrCat("LISTEN ", storage::pg::kEventsChannel));
      !s.ok()) {
    return s;
  }
  // Listening first, then reading: a job's event committed since is notified as well.
  absl::Status seeded =
      store_->VisitJobsIn(v1::Job::RUNNING, [this](const v1::Job& job) { hub_->Track(job); });
  if (!seeded.ok()) return seeded;
  conn_ = *std::move(conn);
  return absl::OkStatus();
}

bool PgEventFeed::Follow() {
  pollfd fd{PQsocket(conn_->raw()), POLLIN, 0};
  if (poll(&fd, 1, 200) < 0 && errno != EINTR) return false;
  if (PQconsumeInput(conn_->raw()) == 0) return false;
  // A job's notifications come in commit order, each range right after the one before:
  // those of one batch are read together, and all the batch's jobs in one query.
  std::vector<storage::pg::PgStore::EventRange> ranges;
  absl::flat_hash_map<std::string, size_t> range_of;  // job id -> index in ranges
  while (PGnotify* n = PQnotifies(conn_->raw())) {
    std::vector<std::string> parts = absl::StrSplit(n->extra, ' ');
    storage::pg::PgStore::EventRange r;
    if (parts.size() == 3 && absl::SimpleAtoi(parts[1], &r.first) &&
        absl::SimpleAtoi(parts[2], &r.last) && r.first >= 1 && r.last >= r.first) {
      r.job_id = std::move(parts[0]);
      auto [it, added] = range_of.try_emplace(r.job_id, ranges.size());
      if (added) {
        ranges.push_back(std::move(r));
      } else {
        ranges[it->second].last = std::max(ranges[it->second].last, r.last);
      }
    }
    PQfreemem(n);
  }
  constexpr size_t kRangesPerRead = 1000;
  for (size_t begin = 0; begin < ranges.size(); begin += kRangesPerRead) {
    std::vector<storage::pg::PgStore::EventRange> some(
        ranges.begin() + begin, ranges.begin() + std::min(ranges.size(), begin + kRangesPerRead));
    auto events = store_->ReadEventRanges(some);
    if (!events.ok()) return false;
    // Fewer only if a job was removed meanwhile: its watchers learn that from the store.
    const absl::Time now = absl::Now();
    for (const auto& event : *events) {
      server_metrics::ObserveFeedLag(now - v1::ToTime(event->event.time()));
      hub_->Publish(event);
      if (observer_) observer_(event->event);
    }
  }
  return conn_->ok();
}

void PgEventFeed::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  while (!stopping_) {
    if (conn_ != nullptr && Follow()) {
      backoff = absl::Milliseconds(100);
      continue;
    }
    if (conn_ != nullptr) {
      conn_.reset();
      server_metrics::CountFeedLost();
      std::cerr << "jobstream-server: lost the PostgreSQL event feed; watchers resume once it "
                   "is back\n";
      hub_->Reset(absl::UnavailableError(
          "this server lost its event feed from PostgreSQL; resume after the last sequence"));
    }
    if (absl::Status s = Listen(); s.ok()) {
      ++reconnects_;
      continue;
    }
    for (absl::Time until = absl::Now() + backoff; !stopping_ && absl::Now() < until;) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace jobstream::watch
