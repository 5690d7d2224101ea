#include "gateway/events_feed.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gateway/gateway.h"
#include "gateway/http_mapping.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::gateway {
namespace {

SseChunkPtr Format(const v1::JobEvent& event) {
  auto chunk = std::make_shared<SseChunk>();
  chunk->sequence = event.sequence();
  chunk->progress = event.type() == v1::JobEvent::PROGRESS;
  // ids are "jobId:sequence": one stream carries many jobs' sequences.
  chunk->json = ToJson(event);
  chunk->text = SseEvent(absl::StrCat(event.job_id(), ":", event.sequence()),
                         absl::AsciiStrToLower(v1::JobEvent::Type_Name(event.type())),
                         chunk->json);
  return chunk;
}

}  // namespace

EventsFeed::EventsFeed(Gateway* gateway, std::string authorization,
                       v1::WatchJobsRequest request)
    : gateway_(gateway), authorization_(std::move(authorization)), request_(std::move(request)) {}

std::string EventsFeed::Key(const v1::WatchJobsRequest& request) {
  std::vector<std::string> types(request.types().begin(), request.types().end());
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());
  std::vector<std::pair<std::string, std::string>> labels(request.labels().begin(),
                                                          request.labels().end());
  std::sort(labels.begin(), labels.end());
  // Lengths first, so no choice of names can make two filters look alike.
  std::string key;
  for (const std::string& t : types) absl::StrAppend(&key, "t", t.size(), ":", t);
  for (const auto& [k, v] : labels) absl::StrAppend(&key, "l", k.size(), ":", k, v.size(), ":", v);
  std::vector<int> states(request.states().begin(), request.states().end());
  std::sort(states.begin(), states.end());
  states.erase(std::unique(states.begin(), states.end()), states.end());
  for (int s : states) absl::StrAppend(&key, "s", s, ";");
  return key;
}

void EventsFeed::Open() {
  std::weak_ptr<EventsFeed> weak = shared_from_this();
  ++gateway_->metrics().upstream_streams_open;
  auto handle = UpstreamWatch::StartAll(
      gateway_->stub(), authorization_, request_,
      [weak](const v1::JobEvent& event) {
        if (auto self = weak.lock()) self->OnEvent(event);
      },
      [this, self = shared_from_this()](const grpc::Status& status) {
        --gateway_->metrics().upstream_streams_open;
        OnDone(status);
      },
      [weak] {
        if (auto self = weak.lock()) self->OnStarted();
      });
  absl::MutexLock lock(&mu_);
  upstream_ = std::move(handle);
  if (ended_) upstream_->Cancel();
}

bool EventsFeed::Join(const std::shared_ptr<StreamSink>& session) {
  absl::MutexLock lock(&mu_);
  if (ended_) return false;
  if (!started_) {
    waiting_.push_back(session);
    return true;
  }
  Start(session);
  return true;
}

void EventsFeed::Start(const std::shared_ptr<StreamSink>& session) {
  sinks_[session.get()] = session;
  // Posted in this order, so they run in it: the header, then each live job's snapshot;
  // live events come after, since they are delivered under this same lock.
  std::weak_ptr<EventsFeed> weak = shared_from_this();
  session->StreamStarted([s = session.get(), weak] {
    if (auto feed = weak.lock()) feed->Leave(s);
  });
  for (auto& [id, job] : live_) {
    if (!job.snapshot) {
      v1::JobEvent snapshot = job.event;
      snapshot.set_type(v1::JobEvent::SNAPSHOT);
      job.snapshot = Format(snapshot);
    }
    session->Deliver(job.snapshot);
  }
}

void EventsFeed::Leave(FeedSink* sink) {
  std::shared_ptr<WatchHandle> cancel;
  {
    absl::MutexLock lock(&mu_);
    sinks_.erase(sink);
    if (sinks_.empty() && waiting_.empty() && !ended_) {
      ended_ = true;  // nobody left: no one may join this call any more
      cancel = upstream_;
    }
  }
  if (cancel) cancel->Cancel();
}

void EventsFeed::OnStarted() {
  absl::MutexLock lock(&mu_);
  if (ended_ || started_) return;
  started_ = true;
  for (const std::shared_ptr<StreamSink>& session : waiting_) Start(session);
  waiting_.clear();
}

void EventsFeed::OnEvent(const v1::JobEvent& event) {
  SseChunkPtr chunk = Format(event);
  absl::MutexLock lock(&mu_);
  if (v1::IsFinished(event.status().state())) {
    live_.erase(event.job_id());
  } else {
    live_[event.job_id()] = LiveJob{event, nullptr};
  }
  for (auto& [sink, weak] : sinks_) {
    if (auto session = weak.lock()) session->Deliver(chunk);
  }
}

void EventsFeed::OnDone(const grpc::Status& status) {
  std::vector<std::shared_ptr<StreamSink>> waiting, streaming;
  bool started;
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    started = started_;
    waiting = std::move(waiting_);
    for (auto& [sink, weak] : sinks_) {
      if (auto s = weak.lock()) streaming.push_back(std::move(s));
    }
    waiting_.clear();
    sinks_.clear();
    live_.clear();
  }
  // Refused before it started (a bad filter): each waiting request gets the error. Ended
  // later: each stream ends; EventSource reconnects to a new feed and a fresh snapshot.
  const grpc::Status refusal =
      status.ok() || started
          ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the event stream ended; try again")
          : status;
  for (auto& session : waiting) session->StreamRefused(refusal);
  for (auto& session : streaming) session->FeedEnded();
}

}  // namespace jobstream::gateway
