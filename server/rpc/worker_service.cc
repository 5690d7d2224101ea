#include "server/rpc/worker_service.h"

#include <atomic>
#include <functional>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/jobs/worker_requests.h"
#include "server/rpc/authorize.h"

namespace jobstream::rpc {
namespace {

using Endings = google::protobuf::RepeatedPtrField<v1::JobEnding>;
using EndingResults = google::protobuf::RepeatedPtrField<v1::JobEndingResult>;

constexpr int kMaxEndings = 1000;

// What EndJobs (at least one ending) and LeaseJob (none or more) refuse whole, before
// anything is ended.
absl::Status CheckEndings(const Endings& endings, int at_least) {
  if (endings.size() < at_least || endings.size() > kMaxEndings) {
    return absl::InvalidArgumentError(absl::StrCat("endings: ", endings.size(), " given; send ",
                                                   at_least, "..", kMaxEndings));
  }
  for (int i = 0; i < endings.size(); ++i) {
    if (endings[i].ending_case() == v1::JobEnding::ENDING_NOT_SET) {
      return absl::InvalidArgumentError(
          absl::StrCat("endings[", i, "]: set one of complete, fail or release"));
    }
  }
  return absl::OkStatus();
}

// Ends each of `endings` as its own call would, writing its answer to the same place in
// `results`; `done` runs once, after the last answer (on whichever thread gives it).
void EndEach(jobs::JobBackend& manager, const Endings& endings, const auth::Scope& scope,
             EndingResults* results, std::function<void()> done) {
  const int n = endings.size();
  if (n == 0) return done();
  // Every result exists before any ending starts: each callback fills only its own.
  for (int i = 0; i < n; ++i) results->Add();
  auto left = std::make_shared<std::atomic<int>>(n);
  auto finished = std::make_shared<std::function<void()>>(std::move(done));
  for (int i = 0; i < n; ++i) {
    auto answered = [results, left, finished, i](absl::StatusOr<v1::Job> job) {
      v1::JobEndingResult& result = (*results)[i];
      if (job.ok()) {
        result.set_job_id(job->id());
        result.set_state(job->state());
      } else {
        result.mutable_error()->set_code(static_cast<int>(job.status().code()));
        result.mutable_error()->set_message(std::string(job.status().message()));
      }
      if (left->fetch_sub(1) == 1) (*finished)();
    };
    const v1::JobEnding& ending = endings[i];
    switch (ending.ending_case()) {
      case v1::JobEnding::kComplete: manager.CompleteWork(ending.complete(), scope, answered); break;
      case v1::JobEnding::kFail: manager.FailWork(ending.fail(), scope, answered); break;
      case v1::JobEnding::kRelease: manager.ReleaseWork(ending.release(), scope, answered); break;
      case v1::JobEnding::ENDING_NOT_SET:  // refused by CheckEndings
        answered(absl::InvalidArgumentError("no ending"));
        break;
    }
  }
}

// One LeaseJob call. It lives until both gRPC is done with it and LeaseJobs has returned
// (the answer may come first, from the delivery thread). If the caller goes away while
// it waits, the wait is abandoned; jobs leased in that very moment are given back.
class LeaseReactor : public grpc::ServerUnaryReactor {
 public:
  LeaseReactor(jobs::JobBackend* manager, CallTracker* calls, grpc::CallbackServerContext* ctx,
               const v1::LeaseJobRequest* request, const auth::Principal& who,
               v1::LeaseJobResponse* response)
      : manager_(manager),
        calls_(calls),
        ctx_(ctx),
        request_(request),
        response_(response),
        scope_(who.scope()) {
    calls_->Enter();
    // The endings first: the slots they free are free for this very lease. Where they are
    // free as soon as the endings are staged, the lease starts at once, and its STARTED
    // may share their synced write; the answer still waits for both.
    const bool at_once = manager_->EndingsFreeAtOnce();
    EndEach(*manager_, request->endings(), scope_, &ended_, [this, at_once] {
      Ended();
      if (!at_once) Lease();
    });
    if (at_once) Lease();
  }

  void OnCancel() override {
    std::shared_ptr<jobs::LeaseWaiter> waiter;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      waiter = waiter_;
    }
    if (waiter) manager_->AbandonWait(waiter);
  }
  void OnDone() override { Unref(); }

 private:
  void Lease() {
    auto waiter = manager_->LeaseJobs(
        *request_, ctx_->peer(), scope_, [this](absl::StatusOr<v1::LeaseJobResponse> result) {
          Answer(std::move(result));
        });
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      waiter_ = waiter;
      cancelled = cancelled_;
    }
    if (cancelled && waiter) manager_->AbandonWait(waiter);
    Unref();
  }

  void Answer(absl::StatusOr<v1::LeaseJobResponse> result) {
    if (result.ok() && ctx_->IsCancelled()) {
      for (const v1::LeasedJob& job : result->jobs()) {
        v1::ReleaseJobRequest release;
        release.set_lease_id(job.lease_id());
        manager_->ReleaseWork(release, scope_, [](absl::StatusOr<v1::Job>) {});
      }
      result = absl::CancelledError("the call was cancelled; its jobs were given back");
    }
    {
      absl::MutexLock lock(&mu_);
      if (!ended_all_) {  // answered once the endings are
        answer_ = std::move(result);
        return;
      }
    }
    Reply(std::move(result));
  }

  // Every ending is answered.
  void Ended() {
    std::optional<absl::StatusOr<v1::LeaseJobResponse>> answer;
    {
      absl::MutexLock lock(&mu_);
      ended_all_ = true;
      answer.swap(answer_);
    }
    if (answer) Reply(*std::move(answer));
  }

  void Reply(absl::StatusOr<v1::LeaseJobResponse> result) {
    if (result.ok()) result->mutable_ended()->Swap(&ended_);
    calls_->Reply(this, response_, std::move(result));
  }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  jobs::JobBackend* const manager_;
  CallTracker* const calls_;
  grpc::CallbackServerContext* const ctx_;
  const v1::LeaseJobRequest* const request_;
  v1::LeaseJobResponse* const response_;
  const auth::Scope scope_;
  EndingResults ended_;  // the endings' answers, until the reply takes them
  std::atomic<int> refs_{2};  // Lease()'s and gRPC's (OnDone)
  absl::Mutex mu_;
  std::shared_ptr<jobs::LeaseWaiter> waiter_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_all_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::StatusOr<v1::LeaseJobResponse>> answer_ ABSL_GUARDED_BY(mu_);
};

// One UploadArtifact stream: the header starts an upload, each message appends to it,
// and finish_write commits it. Any error, or a stream that ends or is cancelled before
// finish_write, drops the upload (ArtifactUpload removes what it wrote).
class UploadReactor : public grpc::ServerReadReactor<v1::UploadArtifactRequest> {
 public:
  UploadReactor(jobs::JobBackend* manager, CallTracker* calls,
                absl::StatusOr<auth::Principal> who, v1::Artifact* response)
      : manager_(manager), calls_(calls), response_(response) {
    calls_->Enter();
    if (!who.ok()) {
      End(who.status());
      return;
    }
    scope_ = who->scope();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return End(absl::InvalidArgumentError(
          upload_ ? "the stream ended before a message with finish_write: nothing was kept"
                  : "the stream ended before its header"));
    }
    if (!upload_) {
      if (!request_.has_header()) {
        return End(absl::InvalidArgumentError("the first message must carry the header"));
      }
      auto upload = manager_->BeginWorkerArtifact(request_.header(), scope_);
      if (!upload.ok()) return End(upload.status());
      upload_ = *std::move(upload);
    } else if (request_.has_header()) {
      return End(absl::InvalidArgumentError("only the first message may carry a header"));
    }
    if (request_.data().size() > kMaxMessageData) {
      return End(absl::InvalidArgumentError(absl::StrCat(
          "a message holds ", request_.data().size(), " bytes of data; the limit is ",
          kMaxMessageData)));
    }
    if (absl::Status s = upload_->Append(request_.data()); !s.ok()) return End(s);
    if (!request_.finish_write()) {
      request_.Clear();
      return StartRead(&request_);
    }
    upload_->Finish([this](absl::StatusOr<v1::Artifact> artifact) {
      if (artifact.ok()) *response_ = *std::move(artifact);
      End(artifact.status());
    });
  }

  void OnDone() override {
    upload_.reset();  // drops an unfinished upload
    calls_->Leave();
    delete this;
  }

 private:
  static constexpr size_t kMaxMessageData = 1 << 20;

  void End(const absl::Status& status) { Finish(ToGrpc(status)); }

  jobs::JobBackend* const manager_;
  CallTracker* const calls_;
  v1::Artifact* const response_;
  auth::Scope scope_;
  v1::UploadArtifactRequest request_;
  std::unique_ptr<jobs::ArtifactUpload> upload_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadArtifactRequest>* WorkerServiceImpl::UploadArtifact(
    grpc::CallbackServerContext* ctx, v1::Artifact* response) {
  return new UploadReactor(manager_, calls_,
                           Authorize(*auth_, *ctx, auth::Role::kWork, "UploadArtifact"), response);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::LeaseJob(grpc::CallbackServerContext* ctx,
                                                      const v1::LeaseJobRequest* request,
                                                      v1::LeaseJobResponse* response) {
  auto who = Authorize(*auth_, *ctx, auth::Role::kWork, "LeaseJob");
  if (!who.ok()) {
    auto* reactor = calls_->Begin(ctx);
    calls_->End(reactor, who.status());
    return reactor;
  }
  if (request->endings_size() > 0) {  // refused whole, before anything is ended
    absl::Status s = CheckEndings(request->endings(), 0);
    if (s.ok()) {
      s = jobs::ParseLeaseJobs(*request, ctx->peer(), who->scope(), *types_, absl::Now()).status();
    }
    if (!s.ok()) {
      auto* reactor = calls_->Begin(ctx);
      calls_->End(reactor, s);
      return reactor;
    }
  }
  return new LeaseReactor(manager_, calls_, ctx, request, *who, response);
}

std::optional<auth::Scope> WorkerServiceImpl::Begin(grpc::CallbackServerContext* ctx,
                                                    absl::string_view method,
                                                    grpc::ServerUnaryReactor** reactor) {
  *reactor = calls_->Begin(ctx);
  auto who = Authorize(*auth_, *ctx, auth::Role::kWork, method);
  if (!who.ok()) {
    calls_->End(*reactor, who.status());
    return std::nullopt;
  }
  return who->scope();
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReportProgress(
    grpc::CallbackServerContext* ctx, const v1::ReportProgressRequest* request,
    v1::ReportProgressResponse* response) {
  grpc::ServerUnaryReactor* reactor;
  if (auto scope = Begin(ctx, "ReportProgress", &reactor)) {
    manager_->ReportWork(*request, *scope, [this, reactor, response](
                                                absl::StatusOr<v1::ReportProgressResponse> r) {
      calls_->Reply(reactor, response, std::move(r));
    });
  }
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::CompleteJob(grpc::CallbackServerContext* ctx,
                                                         const v1::CompleteJobRequest* request,
                                                         v1::Job* response) {
  grpc::ServerUnaryReactor* reactor;
  if (auto scope = Begin(ctx, "CompleteJob", &reactor)) {
    manager_->CompleteWork(*request, *scope, Answer(reactor, response));
  }
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::FailJob(grpc::CallbackServerContext* ctx,
                                                     const v1::FailJobRequest* request,
                                                     v1::Job* response) {
  grpc::ServerUnaryReactor* reactor;
  if (auto scope = Begin(ctx, "FailJob", &reactor)) {
    manager_->FailWork(*request, *scope, Answer(reactor, response));
  }
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReleaseJob(grpc::CallbackServerContext* ctx,
                                                        const v1::ReleaseJobRequest* request,
                                                        v1::Job* response) {
  grpc::ServerUnaryReactor* reactor;
  if (auto scope = Begin(ctx, "ReleaseJob", &reactor)) {
    manager_->ReleaseWork(*request, *scope, Answer(reactor, response));
  }
  return reactor;
}

jobs::JobBackend::JobCallback WorkerServiceImpl::Answer(grpc::ServerUnaryReactor* reactor,
                                                        v1::Job* response) {
  return [this, reactor, response](absl::StatusOr<v1::Job> job) {
    calls_->Reply(reactor, response, std::move(job));
  };
}

grpc::ServerUnaryReactor* WorkerServiceImpl::EndJobs(grpc::CallbackServerContext* ctx,
                                                     const v1::EndJobsRequest* request,
                                                     v1::EndJobsResponse* response) {
  grpc::ServerUnaryReactor* reactor;
  auto scope = Begin(ctx, "EndJobs", &reactor);
  if (!scope) return reactor;
  if (absl::Status s = CheckEndings(request->endings(), 1); !s.ok()) {
    calls_->End(reactor, s);
    return reactor;
  }
  EndEach(*manager_, request->endings(), *scope, response->mutable_results(),
          [this, reactor] { calls_->End(reactor, absl::OkStatus()); });
  return reactor;
}

}  // namespace jobstream::rpc
