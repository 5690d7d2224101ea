#include "gateway/job_feed.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "gateway/gateway.h"
#include "gateway/http_mapping.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::gateway {

namespace {

// Events a feed keeps for subscribers joining late; past it the oldest are dropped and a
// subscriber that needs them gets a feed of its own.
constexpr size_t kKeptEvents = 10000;

}  // namespace

SseChunkPtr FormatEvent(const v1::JobEvent& event) {
  auto chunk = std::make_shared<SseChunk>();
  chunk->sequence = event.sequence();
  chunk->progress = event.type() == v1::JobEvent::PROGRESS;
  chunk->terminal = v1::IsTerminal(event.type());
  chunk->json = ToJson(event);
  chunk->text = SseEvent(absl::StrCat(event.sequence()),
                         absl::AsciiStrToLower(v1::JobEvent::Type_Name(event.type())),
                         chunk->json);
  return chunk;
}

JobFeed::JobFeed(Gateway* gateway, std::string authorization, std::string job_id, int64_t base)
    : gateway_(gateway),
      authorization_(std::move(authorization)),
      job_id_(std::move(job_id)),
      retry_(boost::asio::make_strand(gateway->io_context())),
      base_(base),
      last_(base),
      last_contact_(absl::Now()) {}

JobFeed::JoinResult JobFeed::Join(const std::shared_ptr<FeedSink>& sink, int64_t after) {
  absl::MutexLock lock(&mu_);
  if (ended_) return JoinResult::kEnded;
  if (after < base_) return JoinResult::kTooLate;
  // Catch up from what is kept; later events reach it from OnEvent, after these.
  for (const SseChunkPtr& chunk : kept_) {
    if (chunk->sequence > after) sink->Deliver(chunk);
  }
  sinks_.emplace(sink.get(), sink);
  return JoinResult::kJoined;
}

void JobFeed::Leave(FeedSink* sink) {
  absl::MutexLock lock(&mu_);
  sinks_.erase(sink);
  if (sinks_.empty() && !ended_) {
    ended_ = true;  // nobody left to serve; a new watcher gets a new feed
    if (upstream_) upstream_->Cancel();
    retry_.cancel();
  }
}

void JobFeed::Open() {
  int64_t from;
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    from = last_;
  }
  // Started outside mu_: the call's callbacks take it.
  ++gateway_->metrics().upstream_streams_open;
  auto self = shared_from_this();
  auto handle = UpstreamWatch::Start(
      gateway_->stub(), authorization_, job_id_, from, [self](const v1::JobEvent& e) { self->OnEvent(e); },
      [self](const grpc::Status& s) {
        --self->gateway_->metrics().upstream_streams_open;
        self->OnDone(s);
      });
  absl::MutexLock lock(&mu_);
  upstream_ = handle;
  if (ended_) handle->Cancel();  // the last subscriber left meanwhile
}

void JobFeed::OnEvent(const v1::JobEvent& event) {
  absl::MutexLock lock(&mu_);
  if (ended_ || event.sequence() <= last_) return;
  last_ = event.sequence();
  last_contact_ = absl::Now();
  backoff_ = absl::Milliseconds(100);
  SseChunkPtr chunk = FormatEvent(event);
  kept_.push_back(chunk);
  if (kept_.size() > kKeptEvents) {
    base_ = kept_.front()->sequence;
    kept_.pop_front();
  }
  for (auto it = sinks_.begin(); it != sinks_.end();) {
    if (auto sink = it->second.lock()) {
      sink->Deliver(chunk);
      ++it;
    } else {
      sinks_.erase(it++);
    }
  }
  // Whether the job is done is the server's to say: it ends the stream right after the
  // job's last end, and a retry may follow an earlier one.
  last_terminal_ = chunk->terminal;
}

void JobFeed::OnDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  upstream_.reset();
  if (ended_) return;
  if (status.ok() && last_terminal_) {
    ended_ = true;
    for (auto& [ptr, weak] : sinks_) {
      if (auto sink = weak.lock()) sink->FeedFinished();
    }
    sinks_.clear();
    return;
  }
  if (!client::ResumableWatchEnd(status.error_code()) ||
      absl::Now() - last_contact_ > gateway_->options().reconnect_timeout) {
    return End();
  }
  // The server went away or cut the stream: resume after the last event received.
  ++gateway_->metrics().upstream_reconnects;
  retry_.expires_after(absl::ToChronoMilliseconds(backoff_));
  backoff_ = std::min(backoff_ * 2, absl::Seconds(2));
  retry_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->Open();
  });
}

void JobFeed::End() {
  ended_ = true;
  for (auto& [ptr, weak] : sinks_) {
    if (auto sink = weak.lock()) sink->FeedEnded();
  }
  sinks_.clear();
}

}  // namespace jobstream::gateway
