#include "absl/strings/string_view.h"
#include "server/jobs/job_types.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "server/jobs/handlers/demo_steps.h"

namespace jobstream::jobs {

absl::Status ValidateTypeName(absl::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 &&
            (absl::ascii_islower(name[0]) || absl::ascii_isdigit(name[0]));
  for (char c : name) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' ||
                c == '-');
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "type \"", absl::CHexEscape(name.substr(0, 80)),
      "\" is not a valid type name (1 to 64 characters of a-z 0-9 . _ -, starting with a "
      "letter or digit)"));
}

absl::StatusOr<JobTypes> JobTypes::FromConfig(const v1::ServerConfig& config) {
  auto handlers = std::make_shared<std::map<std::string, std::unique_ptr<Handler>>>();
  (*handlers)[DemoStepsHandler::kType] = std::make_unique<DemoStepsHandler>();

  JobTypes types;
  types.handlers_ = handlers;
  types.types_[DemoStepsHandler::kType] =
      JobType{DemoStepsHandler::kType, 3, handlers->at(DemoStepsHandler::kType).get()};
  for (const v1::JobTypeConfig& t : config.types()) {
    if (absl::Status s = ValidateTypeName(t.name()); !s.ok()) return s;
    if (t.max_attempts() < 0 || t.max_attempts() > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat("type ", t.name(), ": maxAttempts must be 1..100 (0 means 3)"));
    }
    JobType type{t.name(), t.max_attempts() == 0 ? 3 : t.max_attempts(), nullptr};
    switch (t.runner_case()) {
      case v1::JobTypeConfig::kBuiltin: {
        auto h = handlers->find(t.name());
        if (h == handlers->end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("type ", t.name(), ": there is no built-in handler of that name"));
        }
        type.handler = h->second.get();
        break;
      }
      case v1::JobTypeConfig::RUNNER_NOT_SET:
        return absl::InvalidArgumentError(
            absl::StrCat("type ", t.name(), ": say how it runs (\"builtin\": {})"));
    }
    types.types_[t.name()] = std::move(type);  // a later declaration replaces an earlier one
  }
  return types;
}

absl::StatusOr<v1::ServerConfig> JobTypes::ReadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  v1::ServerConfig config;
  auto status = google::protobuf::util::JsonStringToMessage(text.str(), &config);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": ", status.message().as_string()));
  }
  return config;
}

const JobType* JobTypes::Find(absl::string_view name) const {
  auto it = types_.find(name);
  return it == types_.end() ? nullptr : &it->second;
}

std::vector<std::string> JobTypes::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, type] : types_) names.push_back(name);
  return names;
}

std::vector<std::string> JobTypes::InServerTypes() const {
  std::vector<std::string> names;
  for (const auto& [name, type] : types_) {
    if (type.handler != nullptr) names.push_back(name);
  }
  return names;
}

}  // namespace jobstream::jobs
