// JobTypes: the declared job types. demo.steps is always there; --config adds more.
// A Submit of any other type is refused, naming the known ones.
#pragma once

#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/handler.h"

namespace jobstream::jobs {

struct JobType {
  std::string name;
  int max_attempts = 3;
  const Handler* handler = nullptr;  // in-server handler
};

class JobTypes {
 public:
  // The built-ins plus the types `config` declares. INVALID_ARGUMENT for a bad config.
  static absl::StatusOr<JobTypes> FromConfig(const v1::ServerConfig& config);
  // Reads a ServerConfig from a proto3 JSON file.
  static absl::StatusOr<v1::ServerConfig> ReadConfigFile(const std::string& path);

  const JobType* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;
  // Types run by in-server handlers.
  std::vector<std::string> InServerTypes() const;

 private:
  std::shared_ptr<const std::map<std::string, std::unique_ptr<Handler>>> handlers_;
  std::map<std::string, JobType, std::less<>> types_;
};

// OK for a well-formed type name: 1..64 characters of [a-z0-9._-], first a letter or digit.
absl::Status ValidateTypeName(absl::string_view name);

}  // namespace jobstream::jobs
