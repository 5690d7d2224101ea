// Artifact downloads: GET and HEAD /v1/jobs/{id}/artifacts/{name}. The job says what the
// artifact is (size, type, sha256 = the ETag); conditional and Range requests are decided
// from that, then the bytes stream from GetArtifact to the socket one chunk at a time —
// the next chunk is read only once the last is written, so a slow reader holds one chunk.
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/handlers.h"
#include "gateway/http_mapping.h"
#include "gateway/upstream_call.h"

namespace jobstream::gateway {
namespace {

class ArtifactDownload : public grpc::ClientReadReactor<v1::GetArtifactResponse> {
 public:
  static void Start(const SessionPtr& session, v1::GetArtifactRequest request,
                    std::string sha256) {
    auto download = std::shared_ptr<ArtifactDownload>(
        new ArtifactDownload(session, std::move(request), std::move(sha256)));
    download->self_ = download;
    std::weak_ptr<ArtifactDownload> weak = download;
    session->OnClose([weak] {
      if (auto d = weak.lock()) d->Stop();
    });
    ArtifactDownload* d = download.get();
    session->gateway()->stub()->async()->GetArtifact(&d->ctx_, &d->request_, d);
    d->AddHold();  // OnDone waits until reading is over (see Release)
    d->reading_ = true;
    d->StartRead(&d->message_);
    d->StartCall();
  }

  void OnReadDone(bool ok) override {
    std::string data;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok || stopping_) return Release();
      if (message_.has_artifact() && message_.artifact().sha256() != sha256_) {
        // Replaced since the headers went out: the body can only be cut short.
        stopping_ = true;
        ctx_.TryCancel();
        return Release();
      }
      data = std::move(*message_.mutable_data());
      if (!data.empty()) ++queued_;
      // Read ahead while earlier chunks are being written: the next gRPC read overlaps
      // the socket writes, and at most kWindow chunks wait in memory.
      ReadNextLocked();
    }
    if (data.empty()) return;
    std::weak_ptr<ArtifactDownload> weak = self_;
    session_->Post([s = session_.get(), data = std::move(data), weak]() mutable {
      s->WriteBody(std::move(data), [weak] {
        if (auto d = weak.lock()) d->Written();
      });
    });
  }

  void OnDone(const grpc::Status&) override {
    session_->Post([s = session_.get()] { s->EndBody(); });
    auto last = std::move(self_);  // deletes this on return
  }

 private:
  static constexpr int kWindow = 4;

  ArtifactDownload(SessionPtr session, v1::GetArtifactRequest request, std::string sha256)
      : session_(std::move(session)), request_(std::move(request)), sha256_(std::move(sha256)) {}

  void Written() {
    absl::MutexLock lock(&mu_);
    --queued_;
    ReadNextLocked();
  }
  void ReadNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (released_ || reading_) return;
    if (stopping_) return Release();
    if (queued_ >= kWindow) return;  // Written() reads on
    reading_ = true;
    message_.Clear();
    StartRead(&message_);
  }
  // The client left: no more reads, and the call is cancelled.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    ctx_.TryCancel();
    if (!reading_) Release();
  }
  void Release() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (released_) return;
    released_ = true;
    RemoveHold();
  }

  const SessionPtr session_;
  std::shared_ptr<ArtifactDownload> self_;  // until OnDone
  grpc::ClientContext ctx_;
  v1::GetArtifactRequest request_;
  const std::string sha256_;
  v1::GetArtifactResponse message_;
  absl::Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int queued_ ABSL_GUARDED_BY(mu_) = 0;  // chunks handed to the session, not yet written
};

void Serve(const SessionPtr& session, const Route& route, const v1::Job& job) {
  const v1::Artifact* artifact = nullptr;
  for (const v1::Artifact& a : job.artifacts()) {
    if (a.name() == route.artifact) artifact = &a;
  }
  if (artifact == nullptr) {
    return session->ReplyError(grpc::StatusCode::NOT_FOUND,
                               absl::StrCat("job ", job.id(), " has no artifact \"",
                                            route.artifact.substr(0, 300), "\""));
  }
  const int64_t size = artifact->size();
  const std::string etag = absl::StrCat("\"", artifact->sha256(), "\"");
  Headers headers = {
      {"ETag", etag},
      {"Accept-Ranges", "bytes"},
      // The same URL gets new bytes if a later attempt replaces the artifact: revalidate.
      {"Cache-Control", "no-cache"},
      {"Content-Disposition", ContentDisposition(route.Param("download").has_value(),
                                                 artifact->name())},
      // Bytes a job wrote must never run as a page of the gateway's origin.
      {"X-Content-Type-Options", "nosniff"},
      {"Content-Security-Policy", "sandbox"},
  };
  if (auto none_match = session->Header("If-None-Match");
      none_match && EtagMatches(*none_match, etag)) {
    return session->Reply({304, "", artifact->content_type(), std::move(headers)});
  }
  std::optional<std::string> range = session->Header("Range");
  if (auto if_range = session->Header("If-Range"); if_range && *if_range != etag) {
    range.reset();  // the client's copy is of other bytes: send them all
  }
  const RangeRequest r =
      ParseRange(range ? std::optional<absl::string_view>(*range) : std::nullopt, size);
  if (r.kind == RangeRequest::kUnsatisfiable) {
    headers.emplace_back("Content-Range", absl::StrCat("bytes */", size));
    return session->Reply({416,
                           ErrorJson(grpc::StatusCode::OUT_OF_RANGE,
                                     absl::StrCat("the range is outside the artifact's ", size,
                                                  " bytes")),
                           "application/json", std::move(headers)});
  }
  int status = 200;
  int64_t first = 0, length = size;
  if (r.kind == RangeRequest::kPartial) {
    status = 206;
    first = r.first;
    length = r.last - r.first + 1;
    headers.emplace_back("Content-Range", absl::StrCat("bytes ", r.first, "-", r.last, "/", size));
  }
  if (route.head || length == 0) {
    headers.emplace_back("Content-Type", artifact->content_type());
    Response response{status, "", artifact->content_type(), std::move(headers)};
    if (route.head) response.length_without_body = static_cast<uint64_t>(length);
    return session->Reply(std::move(response));
  }
  v1::GetArtifactRequest request;
  request.set_job_id(job.id());
  request.set_name(artifact->name());
  request.set_offset(first);
  request.set_limit(length);
  session->BeginBody(status, artifact->content_type(), static_cast<uint64_t>(length),
                     std::move(headers),
                     [session, request = std::move(request), sha = artifact->sha256()] {
                       ArtifactDownload::Start(session, request, sha);
                     });
}

}  // namespace

void GetArtifact(const SessionPtr& session, const Route& route) {
  auto call = NewCall<v1::GetStatusRequest, v1::Job>(*session);
  call->request.set_job_id(route.job_id);
  Forward(session, call,
          [session](auto... a) { session->gateway()->stub()->async()->GetStatus(a...); },
          [session, route](const v1::Job& job) { Serve(session, route, job); });
}

}  // namespace jobstream::gateway
