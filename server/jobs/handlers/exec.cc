#include "server/jobs/handlers/exec.h"

#include <sys/stat.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "server/exec/child_process.h"
#include "server/exec/output_dir.h"

namespace jobstream::jobs {

absl::StatusOr<std::unique_ptr<ExecHandler>> ExecHandler::Create(const v1::ExecRunner& config,
                                                                  const std::string& type) {
  if (config.argv().empty()) {
    return absl::InvalidArgumentError("exec.argv is required: the program and its arguments");
  }
  exec::ProgramOptions options;
  auto program = exec::ResolveProgram(config.argv(0));
  if (!program.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("exec.argv[0]: ", program.status().message()));
  }
  options.argv.assign(config.argv().begin(), config.argv().end());
  options.argv[0] = *program;
  for (int i = 0; i < config.argv_size(); ++i) {
    if (config.argv(i).find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("exec.argv[", i, "] holds a NUL byte"));
    }
  }
  for (const auto& [key, value] : config.env()) {
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos ||
        value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("exec.env: \"", key, "\" is not a usable variable name"));
    }
    if (key.rfind("JOBSTREAM_", 0) == 0 || key == "TRACEPARENT") {
      return absl::InvalidArgumentError(
          absl::StrCat("exec.env: ", key, " is set by the server for each job"));
    }
    options.env[key] = value;
  }
  if (!config.working_dir().empty()) {
    struct stat st;
    if (stat(config.working_dir().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exec.workingDir: \"", config.working_dir(), "\" is not a directory"));
    }
    options.working_dir = config.working_dir();
  }
  if (config.has_kill_grace()) {
    const absl::Duration grace = absl::Seconds(config.kill_grace().seconds()) +
                                 absl::Nanoseconds(config.kill_grace().nanos());
    if (grace < absl::ZeroDuration() || grace > absl::Minutes(5)) {
      return absl::InvalidArgumentError("exec.killGrace must be 0s to 5m");
    }
    options.kill_grace = grace;
  }
  return std::unique_ptr<ExecHandler>(new ExecHandler(std::move(options), type));
}

absl::Status ExecHandler::Validate(const google::protobuf::Struct&) const {
  return absl::OkStatus();
}

namespace {

absl::Status UploadOutputs(JobContext& ctx, const exec::OutputDir& dir,
                           const std::function<void(absl::string_view)>& log) {
  std::vector<std::string> skipped;
  auto files = dir.Files(&skipped);
  for (const std::string& what : skipped) log(absl::StrCat("output not uploaded: ", what));
  absl::Status error = files.status();
  if (error.ok()) {
    for (const exec::OutputFile& file : *files) {
      auto artifact = AttachFile(ctx, file.name, "", file.path);
      if (!artifact.ok()) {
        error = absl::Status(artifact.status().code(),
                             absl::StrCat("uploading output ", file.name, ": ",
                                          artifact.status().message()));
        break;
      }
    }
  }
  // A name or size the server refuses would be refused again: not worth another attempt.
  if (!error.ok()) MarkRetryable(error, error.code() == absl::StatusCode::kUnavailable);
  return error;
}

}  // namespace

absl::StatusOr<google::protobuf::Value> ExecHandler::Run(JobContext& ctx) const {
  exec::ProgramHooks hooks;
  hooks.report = [&ctx](const v1::Progress& p) { ctx.Report(p); };
  hooks.stop = [&ctx] { return ctx.Cancelled(); };
  hooks.log = [&ctx](absl::string_view what) {
    std::cerr << "jobstream-server: job " << ctx.job_id() << ": " << what << "\n";
  };
  auto output = exec::OutputDir::Create(ctx.job_id(), ctx.attempt());
  if (!output.ok()) {
    absl::Status error = output.status();
    MarkRetryable(error);
    return error;
  }
  exec::ProgramOptions options = options_;
  if (std::string traceparent = ctx.traceparent(); !traceparent.empty()) {
    options.env["TRACEPARENT"] = std::move(traceparent);
  }
  exec::ProgramOutcome outcome = exec::RunJobProgram(options, ctx.job_id(), type_, ctx.attempt(),
                                                     ctx.params(), (*output)->path(), hooks);
  if (outcome.result.ok()) {
    // What the program left in its output directory becomes the job's artifacts.
    if (absl::Status s = UploadOutputs(ctx, **output, hooks.log); !s.ok()) return s;
    return outcome.result;
  }
  absl::Status error = outcome.result.status();
  MarkRetryable(error, outcome.retryable);
  if (!outcome.details.fields().empty()) SetErrorDetails(error, outcome.details);
  return error;
}

}  // namespace jobstream::jobs
