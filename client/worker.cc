#include "client/worker.h"

#include <iostream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/job_client.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::client {
namespace {

using v1::ToProto;
using v1::ToTime;

// Calls that end a job are retried while the server restarts, until the lease is over.
bool Transient(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// Streams one file as an artifact of the leased job. heartbeat runs between messages, so
// a long upload keeps its lease.
absl::Status UploadFile(v1::WorkerService::Stub& stub, const std::string& lease_id,
                        const exec::OutputFile& file, const std::function<void()>& heartbeat) {
  constexpr size_t kPiece = 256 << 10;
  grpc::ClientContext ctx;
  v1::Artifact artifact;
  auto writer = stub.UploadArtifact(&ctx, &artifact);
  v1::UploadArtifactRequest message;
  message.mutable_header()->set_lease_id(lease_id);
  message.mutable_header()->set_name(file.name);
  message.mutable_header()->set_size(file.size);
  bool broken = false;
  absl::Status read = exec::ReadFileInPieces(file.path, kPiece, [&](absl::string_view piece) {
    message.set_data(std::string(piece));
    if (!writer->Write(message)) {
      broken = true;
      return absl::CancelledError("the stream broke");
    }
    message.Clear();
    heartbeat();
    return absl::OkStatus();
  });
  if (!read.ok() && !broken) {
    ctx.TryCancel();  // the server drops the upload
    writer->Finish().ok();
    return read;
  }
  if (!broken) {
    message.set_finish_write(true);
    writer->WriteLast(message, grpc::WriteOptions());
  }
  return FromGrpc(writer->Finish());
}

}  // namespace

Worker::Worker(std::shared_ptr<grpc::Channel> channel, WorkerOptions options)
    : stub_(v1::WorkerService::NewStub(std::move(channel))), options_(std::move(options)) {}

void Worker::Log(const std::string& line) {
  // One write per line: slots (and workers sharing a log file) must not interleave.
  std::cerr << absl::StrCat(absl::FormatTime("%H:%M:%E3S ", absl::Now(), absl::LocalTimeZone()),
                            "jobstream work: ", line, "\n")
            << std::flush;
}

void Worker::Stop() {
  absl::MutexLock lock(&mu_);
  if (stopping_.HasBeenNotified()) return;  // a Notification takes one Notify
  drain_deadline_ = absl::Now() + options_.drain;
  stopping_.Notify();
  for (grpc::ClientContext* ctx : polls_) ctx->TryCancel();
}

absl::Status Worker::Run() {
  std::vector<std::thread> slots;
  for (int i = 0; i < options_.concurrency; ++i) slots.emplace_back([this, i] { Slot(i); });
  for (std::thread& t : slots) t.join();
  absl::MutexLock lock(&mu_);
  return refused_;
}

void Worker::Slot(int index) {
  absl::Duration backoff = absl::Milliseconds(100);
  while (!stopping_.HasBeenNotified()) {
    v1::LeaseJobRequest request;
    for (const std::string& type : options_.types) request.add_types(type);
    request.set_worker_id(options_.worker_id);
    *request.mutable_wait() = ToProto(options_.poll_wait);
    if (options_.lease_duration > absl::ZeroDuration()) {
      *request.mutable_lease_duration() = ToProto(options_.lease_duration);
    }
    request.set_max_jobs(1);
    v1::LeaseJobResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.poll_wait + absl::Seconds(10)));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_.HasBeenNotified()) break;
      polls_.insert(&ctx);
    }
    grpc::Status status = stub_->LeaseJob(&ctx, request, &response);
    {
      absl::MutexLock lock(&mu_);
      polls_.erase(&ctx);
    }
    if (!status.ok()) {
      if (stopping_.HasBeenNotified()) break;
      if (!Transient(status) && status.error_code() != grpc::StatusCode::CANCELLED) {
        // The server refused the request itself (e.g. an undeclared type): say so, stop.
        Log(absl::StrCat("LeaseJob refused: ", status.error_message()));
        {
          absl::MutexLock lock(&mu_);
          if (refused_.ok()) refused_ = absl::FailedPreconditionError(status.error_message());
        }
        Stop();
        break;
      }
      if (index == 0) Log(absl::StrCat("server unavailable (", status.error_message(), "); retrying"));
      stopping_.WaitForNotificationWithTimeout(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
      continue;
    }
    backoff = absl::Milliseconds(100);
    for (const v1::LeasedJob& leased : response.jobs()) RunJob(leased);
  }
}

absl::Status Worker::UploadOutputs(const exec::OutputDir& dir, const std::string& lease_id,
                                   const std::string& job_id, const absl::Time& lease_end,
                                   const std::function<void()>& heartbeat) {
  std::vector<std::string> skipped;
  auto files = dir.Files(&skipped);
  for (const std::string& what : skipped) {
    Log(absl::StrCat("job ", job_id, ": output not uploaded: ", what));
  }
  if (!files.ok()) return files.status();
  for (const exec::OutputFile& file : *files) {
    absl::Duration backoff = absl::Milliseconds(100);
    for (;;) {
      absl::Status s = UploadFile(*stub_, lease_id, file, heartbeat);
      if (s.ok()) break;
      // The server restarting: upload the file again while the lease may still hold.
      if ((s.code() != absl::StatusCode::kUnavailable &&
           s.code() != absl::StatusCode::kCancelled) ||
          absl::Now() + backoff > lease_end) {
        return absl::Status(s.code(), absl::StrCat("uploading ", file.name, ": ", s.message()));
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
    }
    Log(absl::StrCat("job ", job_id, ": uploaded ", file.name, " (", file.size, " bytes)"));
  }
  return absl::OkStatus();
}

void Worker::RunJob(const v1::LeasedJob& leased) {
  const v1::Job& job = leased.job();
  const std::string& lease_id = leased.lease_id();
  absl::Time lease_end = ToTime(leased.lease_expire_time());
  const absl::Duration lease_length = lease_end - absl::Now();
  Log(absl::StrCat("job ", job.id(), " (", job.type(), ", attempt ", job.attempt(), ") started"));

  enum class StopReason { kNone, kCancelled, kLeaseLost, kDrain } stop = StopReason::kNone;
  // Progress lines are coalesced: the newest waits until progress_interval has passed.
  std::optional<v1::Progress> pending;
  absl::Time last_report = absl::Now();
  auto report = [&](const v1::Progress* progress) {
    v1::ReportProgressRequest request;
    request.set_lease_id(lease_id);
    if (progress) *request.mutable_progress() = *progress;
    v1::ReportProgressResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::Status status = stub_->ReportProgress(&ctx, request, &response);
    last_report = absl::Now();
    if (status.ok()) {
      lease_end = ToTime(response.lease_expire_time());
      if (response.cancel_requested() && stop == StopReason::kNone) {
        Log(absl::StrCat("job ", job.id(), ": cancel requested; stopping the program"));
        stop = StopReason::kCancelled;
      }
    } else if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
               status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      // Another worker may run the job now: stop at once and report nothing more.
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        Log(absl::StrCat("job ", job.id(), ": lease lost (", status.error_message(),
                         "); stopping the program"));
        stop = StopReason::kLeaseLost;
      } else {
        Log(absl::StrCat("job ", job.id(), ": progress refused: ", status.error_message()));
      }
    }
    // UNAVAILABLE: the server is restarting; the next tick tries again.
  };

  exec::ProgramOptions program;
  program.argv = options_.argv;
  program.kill_grace = options_.kill_grace;
  // The attempt's span, so what the program calls joins the job's trace.
  if (!leased.traceparent().empty()) program.env["TRACEPARENT"] = leased.traceparent();
  exec::ProgramHooks hooks;
  hooks.report = [&](const v1::Progress& p) {
    if (stop == StopReason::kLeaseLost) return;
    if (!p.step().empty()) {
      if (pending) {  // what came before the step goes first
        v1::Progress before = *std::move(pending);
        pending.reset();
        report(&before);
      }
      report(&p);
    } else {
      pending = p;
    }
  };
  hooks.tick = [&] {
    if (stop == StopReason::kLeaseLost) return;
    const absl::Time now = absl::Now();
    if (pending && now - last_report >= options_.progress_interval) {
      v1::Progress p = *std::move(pending);
      pending.reset();
      report(&p);
    } else if (now - last_report >= lease_length / 3) {
      report(nullptr);  // heartbeat
    }
    if (stop == StopReason::kNone && stopping_.HasBeenNotified() && now >= drain_deadline_) {
      Log(absl::StrCat("job ", job.id(), ": not done within the drain time; handing it back"));
      stop = StopReason::kDrain;
    }
  };
  hooks.stop = [&] { return stop != StopReason::kNone; };
  hooks.log = [&](absl::string_view what) { Log(absl::StrCat("job ", job.id(), ": ", what)); };

  // The program's output directory: what it leaves there becomes the job's artifacts.
  auto output = exec::OutputDir::Create(job.id(), job.attempt());
  exec::ProgramOutcome outcome;
  if (output.ok()) {
    outcome = exec::RunJobProgram(program, job.id(), job.type(), job.attempt(), job.params(),
                                  (*output)->path(), hooks);
  } else {
    outcome.result = output.status();
    outcome.retryable = true;
  }
  if (stop == StopReason::kLeaseLost) return;
  if (pending) report(&*pending);  // the last progress before the end
  if (outcome.result.ok() && stop == StopReason::kNone) {
    absl::Status uploaded = UploadOutputs(**output, lease_id, job.id(), lease_end, [&] {
      if (absl::Now() - last_report >= lease_length / 3) report(nullptr);
    });
    if (stop == StopReason::kLeaseLost ||
        uploaded.code() == absl::StatusCode::kFailedPrecondition) {
      return;  // the job is no longer ours
    }
    if (!uploaded.ok()) {
      outcome.result = uploaded;
      outcome.retryable = uploaded.code() == absl::StatusCode::kUnavailable;
    }
  }

  // The ending call, retried while the server is away and the lease may still hold.
  auto call = [&](auto&& rpc, const char* what) {
    absl::Duration backoff = absl::Milliseconds(100);
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      v1::Job ended;
      grpc::Status status = rpc(&ctx, &ended);
      if (status.ok()) {
        Log(absl::StrCat("job ", job.id(), ": ", what, " (", v1::Job::State_Name(ended.state()),
                         ")"));
        return;
      }
      if (!Transient(status) || absl::Now() + backoff > lease_end) {
        Log(absl::StrCat("job ", job.id(), ": ", what, " failed: ", status.error_message()));
        return;
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
    }
  };
  if (stop == StopReason::kDrain) {
    v1::ReleaseJobRequest request;
    request.set_lease_id(lease_id);
    call([&](grpc::ClientContext* c, v1::Job* r) { return stub_->ReleaseJob(c, request, r); },
         "handed back");
    return;
  }
  jobs_done_.fetch_add(1);
  if (outcome.result.ok()) {
    v1::CompleteJobRequest request;
    request.set_lease_id(lease_id);
    *request.mutable_result() = *outcome.result;
    call([&](grpc::ClientContext* c, v1::Job* r) { return stub_->CompleteJob(c, request, r); },
         "completed");
    return;
  }
  v1::FailJobRequest request;
  request.set_lease_id(lease_id);
  if (stop == StopReason::kCancelled) {
    request.mutable_error()->set_code(static_cast<int>(grpc::StatusCode::CANCELLED));
    request.mutable_error()->set_message("cancelled by request; the program was stopped");
  } else {
    const absl::Status& error = outcome.result.status();
    request.mutable_error()->set_code(static_cast<int>(error.code()));
    request.mutable_error()->set_message(std::string(error.message()));
    *request.mutable_error()->mutable_details() = outcome.details;
    request.set_retryable(outcome.retryable);
  }
  call([&](grpc::ClientContext* c, v1::Job* r) { return stub_->FailJob(c, request, r); },
       "failed");
}

}  // namespace jobstream::client
