#include "server/rpc/job_service.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "jobstream/v1/auth_config.h"
#include "server/jobs/ids.h"
#include "server/jobs/transitions.h"
#include "server/jobs/validation.h"
#include "server/metrics/server_metrics.h"
#include "server/rpc/authorize.h"
#include "server/rpc/status.h"
#include "server/rpc/watch_reactor.h"
#include "server/tracing/trace_context.h"

namespace jobstream::rpc {

using auth::Role;

std::optional<auth::Principal> JobServiceImpl::Allow(grpc::CallbackServerContext* ctx,
                                                     grpc::ServerUnaryReactor* reactor,
                                                     auth::Role role, absl::string_view method) {
  auto who = Authorize(*auth_, *ctx, role, method);
  if (who.ok()) return *std::move(who);
  calls_->End(reactor, who.status());
  return std::nullopt;
}

bool JobServiceImpl::OverSubmitRate(grpc::CallbackServerContext* ctx,
                                    grpc::ServerUnaryReactor* reactor,
                                    const auth::Principal& who) {
  absl::Duration wait;
  if (submit_rate_ == nullptr || !who.authenticated() ||
      submit_rate_->Take(who.name, absl::Now(), &wait)) {
    return false;
  }
  // gRPC has no Retry-After; the gateway turns this into one.
  const int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1))));
  ctx->AddTrailingMetadata("retry-after", std::to_string(seconds));
  calls_->End(reactor, absl::ResourceExhaustedError(absl::StrCat(
      "token \"", who.name, "\" is over ", submit_rate_->per_second(),
      " submits a second, the limit (--max_submits_per_second); retry in ",
      absl::FormatDuration(absl::Ceil(wait, absl::Milliseconds(1))))));
  return true;
}

grpc::ServerUnaryReactor* JobServiceImpl::Submit(grpc::CallbackServerContext* ctx,
                                                 const v1::SubmitRequest* request,
                                                 v1::Job* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kSubmit, "Submit");
  if (!who || OverSubmitRate(ctx, reactor, *who)) return reactor;
  // The caller's trace context may come as metadata (as gRPC's OpenTelemetry propagators
  // and the gateway send it); W3C has a malformed one ignored. Both managers copy or use
  // the request before Submit returns.
  v1::SubmitRequest traced;
  const v1::SubmitRequest* submit = request;
  if (request->traceparent().empty()) {
    auto header = ctx->client_metadata().find("traceparent");
    if (header != ctx->client_metadata().end()) {
      const std::string value(header->second.data(), header->second.size());
      if (tracing::ParseTraceparent(value)) {
        traced = *request;
        traced.set_traceparent(value);
        submit = &traced;
      }
    }
  }
  manager_->Submit(*submit, who->scope(), [this, reactor, response](absl::StatusOr<v1::Job> job) {
    calls_->Reply(reactor, response, std::move(job));
  });
  return reactor;
}

// A batch is one submit against the token's rate: its size is bounded by the batch limit.
grpc::ServerUnaryReactor* JobServiceImpl::SubmitBatch(grpc::CallbackServerContext* ctx,
                                                      const v1::SubmitBatchRequest* request,
                                                      v1::SubmitBatchResponse* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kSubmit, "SubmitBatch");
  if (!who || OverSubmitRate(ctx, reactor, *who)) return reactor;
  manager_->SubmitBatch(*request, who->scope(),
                        [this, reactor, response](absl::StatusOr<v1::SubmitBatchResponse> batch) {
                          calls_->Reply(reactor, response, std::move(batch));
                        });
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::GetStatus(grpc::CallbackServerContext* ctx,
                                                    const v1::GetStatusRequest* request,
                                                    v1::Job* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kRead, "GetStatus");
  if (!who) return reactor;
  calls_->Reply(reactor, response, manager_->Get(request->job_id(), who->scope()));
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJobStats(grpc::CallbackServerContext* ctx,
                                                      const v1::GetJobStatsRequest* request,
                                                      v1::JobStats* response) {
  auto* reactor = calls_->Begin(ctx);
  // Every tenant's counts: admin, as PauseType.
  if (!Allow(ctx, reactor, Role::kAdmin, "GetJobStats")) return reactor;
  calls_->Reply(reactor, response,
                absl::StatusOr<v1::JobStats>(stats_ ? stats_->Stats() : v1::JobStats()));
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::WhoAmI(grpc::CallbackServerContext* ctx,
                                                 const v1::WhoAmIRequest* request,
                                                 v1::Identity* response) {
  auto* reactor = calls_->Begin(ctx);
  // Needs no role: a client checks its token with it.
  auto who = auth_->Authenticate(AuthorizationOf(ctx->client_metadata()));
  if (!who.ok()) {
    calls_->End(reactor, who.status());
    return reactor;
  }
  response->set_name(who->name);
  response->set_tenant(who->tenant);
  for (size_t i = 0; i < std::size(v1::kAuthRoles); ++i) {
    if ((who->roles & (1 << i)) != 0) response->add_roles(std::string(v1::kAuthRoles[i]));
  }
  response->set_auth_required(auth_->enabled());
  calls_->End(reactor, absl::OkStatus());
  return reactor;
}

namespace {
// Parses a raw request; INVALID_ARGUMENT if the bytes are not one.
template <typename T>
absl::Status ParseRaw(const grpc::ByteBuffer* raw, T* message) {
  grpc::ByteBuffer copy(*raw);  // shares the slices; the reader consumes its own
  grpc::ProtoBufferReader reader(&copy);
  if (!message->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request is not a valid ", message->GetTypeName()));
  }
  return absl::OkStatus();
}
}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* JobServiceImpl::WatchJob(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw) {
  auto who = Authorize(*auth_, *ctx, Role::kRead, "WatchJob");
  if (!who.ok()) return WatchReactor::Fail(who.status());
  v1::WatchJobRequest parsed;
  if (absl::Status s = ParseRaw(raw, &parsed); !s.ok()) return WatchReactor::Fail(s);
  const v1::WatchJobRequest* request = &parsed;
  if (absl::Status s = jobs::ValidateJobId(request->job_id()); !s.ok()) {
    return WatchReactor::Fail(s);
  }
  if (request->after_sequence() < 0) {
    return WatchReactor::Fail(absl::InvalidArgumentError(absl::StrCat(
        "after_sequence ", request->after_sequence(), " is negative; 0 replays from the start")));
  }
  auto sub = hub_->WatchJob(request->job_id(), request->after_sequence(), who->scope());
  if (!sub.ok()) return WatchReactor::Fail(sub.status());
  return WatchReactor::Start(hub_, *std::move(sub));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* JobServiceImpl::WatchJobs(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw) {
  auto who = Authorize(*auth_, *ctx, Role::kRead, "WatchJobs");
  if (!who.ok()) return WatchReactor::Fail(who.status());
  v1::WatchJobsRequest parsed;
  if (absl::Status s = ParseRaw(raw, &parsed); !s.ok()) return WatchReactor::Fail(s);
  const v1::WatchJobsRequest* request = &parsed;
  watch::JobFilter filter;
  filter.scope = who->scope();
  for (const std::string& type : request->types()) {
    if (absl::Status s = jobs::ValidateTypeName(type); !s.ok()) return WatchReactor::Fail(s);
    filter.types.insert(type);
  }
  if (absl::Status s = jobs::ValidateLabels(request->labels()); !s.ok()) {
    return WatchReactor::Fail(s);
  }
  if (absl::Status s = jobs::ValidateStates(request->states()); !s.ok()) {
    return WatchReactor::Fail(s);
  }
  for (const auto& [k, v] : request->labels()) filter.labels[k] = v;
  for (int state : request->states()) filter.states.insert(state);
  auto sub = hub_->WatchJobs(std::move(filter));
  if (!sub.ok()) return WatchReactor::Fail(sub.status());
  return WatchReactor::Start(hub_, *std::move(sub));
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                   const v1::ListJobsRequest* request,
                                                   v1::ListJobsResponse* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kRead, "ListJobs");
  if (!who) return reactor;
  calls_->Reply(reactor, response, manager_->List(*request, who->scope()));
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(grpc::CallbackServerContext* ctx,
                                                    const v1::CancelJobRequest* request,
                                                    v1::Job* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kSubmit, "CancelJob");
  if (!who) return reactor;
  if (absl::Status s = jobs::ValidateReason(request->reason()); !s.ok()) {
    calls_->End(reactor, s);
    return reactor;
  }
  manager_->Cancel(request->job_id(),
                   jobs::ActionOf("cancel", who->name, request->reason(), absl::Now(), 0),
                   who->scope(), [this, reactor, response](absl::StatusOr<v1::Job> job) {
                     calls_->Reply(reactor, response, std::move(job));
                   });
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::Bulk(jobs::BulkOp op, const char* method,
                                                grpc::CallbackServerContext* ctx,
                                                const v1::BulkRequest* request,
                                                v1::BulkResponse* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kSubmit, method);
  if (!who) return reactor;
  // Shutdown waits for the call (the tracker counts it), so the manager outlives it.
  std::thread([this, op, reactor, request, response, name = who->name, scope = who->scope()] {
    calls_->Reply(reactor, response, manager_->Bulk(op, *request, name, scope));
  }).detach();
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::BulkCancel(grpc::CallbackServerContext* ctx,
                                                     const v1::BulkRequest* request,
                                                     v1::BulkResponse* response) {
  return Bulk(jobs::BulkOp::kCancel, "BulkCancel", ctx, request, response);
}
grpc::ServerUnaryReactor* JobServiceImpl::BulkRetry(grpc::CallbackServerContext* ctx,
                                                    const v1::BulkRequest* request,
                                                    v1::BulkResponse* response) {
  return Bulk(jobs::BulkOp::kRetry, "BulkRetry", ctx, request, response);
}
grpc::ServerUnaryReactor* JobServiceImpl::BulkDelete(grpc::CallbackServerContext* ctx,
                                                     const v1::BulkRequest* request,
                                                     v1::BulkResponse* response) {
  return Bulk(jobs::BulkOp::kDelete, "BulkDelete", ctx, request, response);
}

grpc::ServerUnaryReactor* JobServiceImpl::RetryJob(grpc::CallbackServerContext* ctx,
                                                   const v1::RetryJobRequest* request,
                                                   v1::Job* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kSubmit, "RetryJob");
  if (!who) return reactor;
  absl::Status bad = jobs::ValidateReason(request->reason());
  if (bad.ok() && request->has_params() && !request->as_new()) {
    bad = absl::InvalidArgumentError(
        "params are for a replay (as_new); a retry runs the job with its own params");
  }
  if (!bad.ok()) {
    calls_->End(reactor, bad);
    return reactor;
  }
  auto reply = [this, reactor, response](absl::StatusOr<v1::Job> job) {
    calls_->Reply(reactor, response, std::move(job));
  };
  if (request->as_new()) {
    manager_->Replay(request->job_id(), request->has_params() ? &request->params() : nullptr,
                     jobs::ActionOf("replay", who->name, request->reason(), absl::Now(), 0),
                     who->scope(), std::move(reply));
  } else {
    manager_->Retry(request->job_id(),
                    jobs::ActionOf("retry", who->name, request->reason(), absl::Now(), 0),
                    who->scope(), std::move(reply));
  }
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::DeleteJob(grpc::CallbackServerContext* ctx,
                                                    const v1::DeleteJobRequest* request,
                                                    v1::DeleteJobResponse* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kSubmit, "DeleteJob");
  if (!who) return reactor;
  manager_->Delete(request->job_id(), who->scope(),
                   [this, reactor](absl::Status s) { calls_->End(reactor, s); });
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::PurgeJobs(grpc::CallbackServerContext* ctx,
                                                    const v1::PurgeJobsRequest* request,
                                                    v1::PurgeJobsResponse* response) {
  auto* reactor = calls_->Begin(ctx);
  // Purge reaches across tenants.
  if (!Allow(ctx, reactor, Role::kAdmin, "PurgeJobs")) return reactor;
  if (!request->has_finished_before() ||
      !jobs::IsValidTimestamp(request->finished_before())) {
    calls_->End(reactor, absl::InvalidArgumentError("finished_before is required"));
    return reactor;
  }
  const absl::Time before = v1::ToTime(request->finished_before());
  if (before > absl::Now()) {
    calls_->End(reactor, absl::InvalidArgumentError("finished_before is in the future"));
    return reactor;
  }
  manager_->Purge(before, [this, reactor, response](absl::StatusOr<int64_t> count) {
    if (count.ok()) response->set_purged_count(*count);
    calls_->End(reactor, count.status());
  });
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobTypes(grpc::CallbackServerContext* ctx,
                                                       const v1::ListJobTypesRequest* request,
                                                       v1::ListJobTypesResponse* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kRead, "ListJobTypes");
  if (!who) return reactor;
  *response = manager_->ListTypes(who->scope());
  calls_->End(reactor, absl::OkStatus());
  return reactor;
}

// Admin: a type is every tenant's. A synced write, small and rare: answered in place.
grpc::ServerUnaryReactor* JobServiceImpl::PauseType(grpc::CallbackServerContext* ctx,
                                                    const v1::PauseTypeRequest* request,
                                                    v1::JobTypeInfo* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kAdmin, "PauseType");
  if (!who) return reactor;
  v1::TypePause pause;
  pause.set_by(who->name);
  pause.set_reason(request->reason());
  *pause.mutable_time() = v1::ToProto(absl::Now());
  calls_->Reply(reactor, response, manager_->SetTypePause(request->type(), std::move(pause)));
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceImpl::ResumeType(grpc::CallbackServerContext* ctx,
                                                     const v1::ResumeTypeRequest* request,
                                                     v1::JobTypeInfo* response) {
  auto* reactor = calls_->Begin(ctx);
  auto who = Allow(ctx, reactor, Role::kAdmin, "ResumeType");
  if (!who) return reactor;
  calls_->Reply(reactor, response, manager_->SetTypePause(request->type(), std::nullopt));
  return reactor;
}

namespace {

// One WaitJob call. Like LeaseJob's reactor, it lives until gRPC is done with it and
// WaitJob has returned; a caller that goes away abandons its wait.
class WaitReactor : public grpc::ServerUnaryReactor {
 public:
  WaitReactor(jobs::JobBackend* manager, CallTracker* calls, const v1::WaitJobRequest& request,
              absl::StatusOr<auth::Principal> who, v1::Job* response)
      : manager_(manager), calls_(calls), response_(response) {
    calls_->Enter();
    if (!who.ok()) {
      Answer(who.status());
      Unref();
      return;
    }
    absl::Duration timeout = absl::ZeroDuration();
    if (request.has_timeout()) {
      auto t = jobs::DurationWithin(request.timeout(), "timeout", absl::ZeroDuration(),
                                    absl::Minutes(5));
      if (!t.ok()) {
        Answer(t.status());
        Unref();
        return;
      }
      timeout = *t;
    }
    auto wait = manager_->WaitJob(request.job_id(), who->scope(), timeout,
                                  [this](absl::StatusOr<v1::Job> job) { Answer(std::move(job)); });
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      wait_ = wait;
      cancelled = cancelled_;
    }
    if (cancelled && wait) manager_->AbandonJobWait(wait);
    Unref();
  }

  void OnCancel() override {
    std::shared_ptr<jobs::JobWait> wait;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      wait = wait_;
    }
    if (wait) manager_->AbandonJobWait(wait);
  }
  void OnDone() override { Unref(); }

 private:
  void Answer(absl::StatusOr<v1::Job> job) {
    if (job.ok()) *response_ = *std::move(job);
    // From Finish on, OnDone may run on another thread and delete this: nothing after it
    // may touch a member.
    CallTracker* const calls = calls_;
    Finish(ToGrpc(job.status()));
    calls->Leave();
  }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  jobs::JobBackend* const manager_;
  CallTracker* const calls_;
  v1::Job* const response_;
  std::atomic<int> refs_{2};  // the constructor's and gRPC's (OnDone)
  absl::Mutex mu_;
  std::shared_ptr<jobs::JobWait> wait_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// Streams [begin, end) of one artifact, up to 1 MiB per write: only the message being
// sent is in memory, and a slow reader holds nothing else. If the artifact is replaced or removed
// while it is read, the stream ends ABORTED rather than mix two files.
class ArtifactReader : public grpc::ServerWriteReactor<v1::GetArtifactResponse> {
 public:
  static constexpr size_t kMessageBytes = 1 << 20;

  ArtifactReader(const jobs::JobBackend* manager, std::string job_id,
                 jobs::StoredArtifact stored, int64_t begin, int64_t end)
      : manager_(manager), job_id_(std::move(job_id)), stored_(std::move(stored)),
        pos_(begin), end_(end) {
    *message_.mutable_artifact() = stored_.artifact;
    message_.set_offset(pos_);
    StartWrite(&message_);
  }

  static ArtifactReader* Fail(const absl::Status& status) {
    return new ArtifactReader(status);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the reader went away"));
    server_metrics::CountArtifactBytes(false, static_cast<int64_t>(message_.data().size()));
    if (pos_ >= end_) return Finish(grpc::Status::OK);
    // Up to kMessageBytes per message (several stored chunks): fewer, larger writes.
    message_.Clear();
    message_.set_offset(pos_);
    std::string& data = *message_.mutable_data();
    const int64_t chunk_size = stored_.record.chunk_size();
    while (pos_ < end_ && data.size() < kMessageBytes) {
      const auto index = static_cast<uint32_t>(pos_ / chunk_size);
      std::string chunk;
      absl::Status s = manager_->ReadArtifactChunk(job_id_, stored_, index, &chunk);
      if (absl::IsNotFound(s)) {
        return Finish(ToGrpc(absl::AbortedError(absl::StrCat(
            "artifact \"", stored_.artifact.name(), "\" of job ", job_id_,
            " was replaced or removed while it was read"))));
      }
      if (!s.ok()) return Finish(ToGrpc(s));
      const int64_t skip = pos_ - int64_t{index} * chunk_size;
      const int64_t take =
          std::min<int64_t>(end_ - pos_, static_cast<int64_t>(chunk.size()) - skip);
      if (take <= 0) {
        return Finish(ToGrpc(absl::DataLossError(absl::StrCat(
            "artifact \"", stored_.artifact.name(), "\" of job ", job_id_,
            " is short at byte ", pos_))));
      }
      if (data.empty() && skip == 0 && take == static_cast<int64_t>(chunk.size())) {
        data = std::move(chunk);
      } else {
        data.append(chunk, static_cast<size_t>(skip), static_cast<size_t>(take));
      }
      pos_ += take;
    }
    StartWrite(&message_);
  }

  void OnDone() override { delete this; }

 private:
  explicit ArtifactReader(const absl::Status& status) : manager_(nullptr) {
    Finish(ToGrpc(status));
  }

  const jobs::JobBackend* const manager_;
  const std::string job_id_;
  const jobs::StoredArtifact stored_;
  int64_t pos_ = 0;
  const int64_t end_ = 0;
  v1::GetArtifactResponse message_;
};

}  // namespace

grpc::ServerUnaryReactor* JobServiceImpl::WaitJob(grpc::CallbackServerContext* ctx,
                                                  const v1::WaitJobRequest* request,
                                                  v1::Job* response) {
  return new WaitReactor(manager_, calls_, *request,
                         Authorize(*auth_, *ctx, Role::kRead, "WaitJob"), response);
}

grpc::ServerWriteReactor<v1::GetArtifactResponse>* JobServiceImpl::GetArtifact(
    grpc::CallbackServerContext* ctx, const v1::GetArtifactRequest* request) {
  auto who = Authorize(*auth_, *ctx, Role::kRead, "GetArtifact");
  if (!who.ok()) return ArtifactReader::Fail(who.status());
  auto stored = manager_->FindArtifact(request->job_id(), request->name(), who->scope());
  if (!stored.ok()) return ArtifactReader::Fail(stored.status());
  const int64_t size = stored->artifact.size();
  if (request->offset() < 0 || request->offset() > size) {
    return ArtifactReader::Fail(absl::OutOfRangeError(absl::StrCat(
        "offset ", request->offset(), " is outside 0..", size, " (the artifact's size)")));
  }
  if (request->limit() < 0) {
    return ArtifactReader::Fail(absl::InvalidArgumentError("limit must be >= 0"));
  }
  const int64_t end = request->limit() == 0 || request->limit() > size - request->offset()
                          ? size
                          : request->offset() + request->limit();
  return new ArtifactReader(manager_, request->job_id(), *std::move(stored), request->offset(),
                            end);
}

}  // namespace jobstream::rpc
