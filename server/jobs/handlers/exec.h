// exec types: the server runs the configured program for each attempt (never a command a
// client sent), through exec::RunProgram. Params go to its stdin as JSON; its step,
// progress and result lines become the job's events and result.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "jobstream/v1/config.pb.h"
#include "server/exec/program.h"
#include "server/jobs/handler.h"

namespace jobstream::jobs {

class ExecHandler : public Handler {
 public:
  // Checks the config now, so a bad one stops the server at start: argv[0] must be an
  // executable file (found in PATH if it has no '/'), working_dir a directory, env keys
  // well-formed. Errors name the field.
  static absl::StatusOr<std::unique_ptr<ExecHandler>> Create(const v1::ExecRunner& config,
                                                             const std::string& type);

  // Any JSON object is passed on; the program checks its own params.
  absl::Status Validate(const google::protobuf::Struct& params) const override;
  absl::StatusOr<google::protobuf::Value> Run(JobContext& ctx) const override;

 private:
  ExecHandler(exec::ProgramOptions options, std::string type)
      : options_(std::move(options)), type_(std::move(type)) {}
  const exec::ProgramOptions options_;
  const std::string type_;
};

}  // namespace jobstream::jobs
