// JobFeed: one upstream WatchJob for a job, shared by every browser watching it. Events are
// formatted as SSE once, kept from the feed's starting sequence on, and handed to each
// subscriber's strand in order; a subscriber joining later gets the kept events after its
// own position first, under the same lock that appends, so it sees no gap and no repeat.
// If the server goes away the feed resumes after the last event it received.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "gateway/upstream_watch.h"

namespace jobstream::gateway {

class Gateway;

// One event as every client gets it, formatted once: SSE framing for EventSource
// clients, the bare JSON for WebSocket ones.
struct SseChunk {
  int64_t sequence = 0;
  bool progress = false;  // may be conflated for a slow client
  bool terminal = false;
  std::string text;  // the SSE event (or a comment, or retry:)
  std::string json;  // the event's JSON alone; empty for anything but an event
};
using SseChunkPtr = std::shared_ptr<const SseChunk>;

// A client (SSE or WebSocket) with this many unsent chunks is behind: its PROGRESS chunks
// conflate.
inline constexpr size_t kConflateAfter = 16;

// What a feed delivers to; called on the feed's threads (implementations post).
class FeedSink {
 public:
  virtual ~FeedSink() = default;
  virtual void Deliver(SseChunkPtr chunk) = 0;
  // The feed gave up (the server is gone too long, or the job was removed).
  virtual void FeedEnded() = 0;
  // The job has finished: the server ended its stream right after the job's newest end
  // (an end a retry followed is just an event).
  virtual void FeedFinished() { FeedEnded(); }
};

// A client of a feed that starts only once the server accepts the request (EventsFeed).
class StreamSink : public FeedSink {
 public:
  // The stream starts: the client's header goes out, and `leave` is to be called once it
  // ends. Deliver follows (in order) for the snapshot and live events.
  virtual void StreamStarted(std::function<void()> leave) = 0;
  // The server refused the request (or the feed ended before it started).
  virtual void StreamRefused(const grpc::Status& status) = 0;
};

class JobFeed : public std::enable_shared_from_this<JobFeed> {
 public:
  // `authorization` goes with the upstream call (see Gateway::JoinFeed).
  JobFeed(Gateway* gateway, std::string authorization, std::string job_id, int64_t base);

  enum class JoinResult { kJoined, kTooLate, kEnded };
  // Adds `sink`, which has seen everything up to `after`. kTooLate: this feed keeps nothing
  // as old as `after`; kEnded: it has stopped.
  JoinResult Join(const std::shared_ptr<FeedSink>& sink, int64_t after) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes `sink`; the last one leaving stops the upstream call.
  void Leave(FeedSink* sink) ABSL_LOCKS_EXCLUDED(mu_);
  // Opens the upstream call. Call once, after the first Join.
  void Open() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& job_id() const { return job_id_; }

 private:
  void OnEvent(const v1::JobEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  void End() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Gateway* const gateway_;
  const std::string authorization_;
  const std::string job_id_;
  boost::asio::steady_timer retry_;

  absl::Mutex mu_;
  int64_t base_ ABSL_GUARDED_BY(mu_);   // events after this are kept (up to a cap)
  int64_t last_ ABSL_GUARDED_BY(mu_);   // the newest event received
  std::deque<SseChunkPtr> kept_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<FeedSink*, std::weak_ptr<FeedSink>> sinks_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<WatchHandle> upstream_ ABSL_GUARDED_BY(mu_);
  absl::Time last_contact_ ABSL_GUARDED_BY(mu_);
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(100);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool last_terminal_ ABSL_GUARDED_BY(mu_) = false;  // the newest event ended the job
};

// Formats one job event as its SSE chunk.
SseChunkPtr FormatEvent(const v1::JobEvent& event);

}  // namespace jobstream::gateway
