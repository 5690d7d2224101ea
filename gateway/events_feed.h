// EventsFeed: one upstream WatchJobs call for a filter (/v1/events?type=&label=), shared
// by every dashboard stream with that filter. It keeps the newest event of each live job
// it has seen, so a stream that joins late still starts with one SNAPSHOT per job, as if
// it had opened its own call. Streams get their SSE header only once the server has
// accepted the filter: a bad filter is a 400, before any stream starts. When the upstream
// call ends, every stream ends (EventSource reconnects to a fresh snapshot).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "gateway/job_feed.h"
#include "gateway/upstream_watch.h"

namespace jobstream::gateway {

class EventsFeed : public std::enable_shared_from_this<EventsFeed> {
 public:
  // `authorization` goes with the upstream call (see Gateway::JoinEventsFeed).
  EventsFeed(Gateway* gateway, std::string authorization, v1::WatchJobsRequest request);

  // The same filter, whatever order its parts came in.
  static std::string Key(const v1::WatchJobsRequest& request);

  // From the session's strand. False if this feed has ended (make a new one).
  bool Join(const std::shared_ptr<StreamSink>& session) ABSL_LOCKS_EXCLUDED(mu_);
  void Leave(FeedSink* sink) ABSL_LOCKS_EXCLUDED(mu_);
  // Opens the upstream call. Call once, after the first Join.
  void Open();

 private:
  struct LiveJob {
    v1::JobEvent event;     // the newest
    SseChunkPtr snapshot;   // it as a SNAPSHOT chunk, made when first needed
  };
  void OnStarted() ABSL_LOCKS_EXCLUDED(mu_);
  void OnEvent(const v1::JobEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  // Adds a session whose stream starts now: its header, then the snapshot, in order.
  void Start(const std::shared_ptr<StreamSink>& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Gateway* const gateway_;
  const std::string authorization_;
  const v1::WatchJobsRequest request_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  // Before started_: held here, since nothing else keeps a waiting session alive.
  std::vector<std::shared_ptr<StreamSink>> waiting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<FeedSink*, std::weak_ptr<StreamSink>> sinks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, LiveJob> live_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<WatchHandle> upstream_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jobstream::gateway
