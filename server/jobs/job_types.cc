#include "server/jobs/job_types.h"

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/handlers/demo_steps.h"
#include "server/jobs/handlers/exec.h"
#include "server/jobs/validation.h"

namespace jobstream::jobs {

bool IsPlainName(absl::string_view name, size_t max_size) {
  bool ok = !name.empty() && name.size() <= max_size &&
            (absl::ascii_islower(name[0]) || absl::ascii_isdigit(name[0]));
  for (char c : name) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' ||
                c == '-');
  }
  return ok;
}

absl::Status ValidateTypeName(absl::string_view name) {
  if (absl::StartsWith(name, "jobstream.")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "type \"", absl::CHexEscape(name.substr(0, 80)),
        "\": names starting \"jobstream.\" are the server's own (a batch's parent is "
        "\"jobstream.batch\")"));
  }
  if (IsPlainName(name, 64)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "type \"", absl::CHexEscape(name.substr(0, 80)),
      "\" is not a valid type name (1 to 64 characters of a-z 0-9 . _ -, starting with a "
      "letter or digit)"));
}

absl::Duration JobType::Backoff(int attempt) const {
  absl::Duration d = initial_backoff;
  for (int i = 1; i < attempt && d < max_backoff; ++i) d *= 2;
  d = std::min(d, max_backoff);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return d * std::uniform_real_distribution<double>(0.75, 1.25)(rng);
}

v1::JobTypeInfo JobType::Info() const {
  v1::JobTypeInfo info;
  info.set_name(name);
  info.set_runner(runner);
  info.set_description(description);
  info.set_max_attempts(max_attempts);
  info.set_concurrency(concurrency);
  info.set_default_priority(default_priority);
  info.set_key_concurrency(key_limit.concurrency);
  info.set_key_rate(key_limit.rate);
  if (timeout != absl::InfiniteDuration()) *info.mutable_timeout() = v1::ToProto(timeout);
  if (runner == v1::JobTypeInfo::EXTERNAL) {
    *info.mutable_lease_duration() = v1::ToProto(lease_duration);
  }
  *info.mutable_initial_backoff() = v1::ToProto(initial_backoff);
  *info.mutable_max_backoff() = v1::ToProto(max_backoff);
  return info;
}

v1::KeyAtLimit KeyAtLimitInfo(const KeyAtLimit& key) {
  v1::KeyAtLimit info;
  info.set_tenant(key.tenant);
  info.set_key(key.key);
  info.set_running(key.running);
  info.set_queued(key.queued);
  info.set_concurrency(key.concurrency);
  if (key.rate_wait_ms != 0) {
    *info.mutable_rate_wait_until() = v1::ToProto(absl::FromUnixMillis(key.rate_wait_ms));
  }
  return info;
}

absl::StatusOr<JobTypes> JobTypes::FromConfig(const v1::ServerConfig& config,
                                              TypeDefaults defaults) {
  JobTypes types;
  auto demo = std::make_shared<DemoStepsHandler>();
  types.handlers_.push_back(demo);
  JobType demo_type;
  demo_type.name = DemoStepsHandler::kType;
  demo_type.description = "Built-in demo: named steps with progress ticks.";
  demo_type.initial_backoff = defaults.initial_backoff;
  demo_type.handler = demo.get();
  types.types_[demo_type.name] = demo_type;

  std::map<std::string, int> declared;  // name -> index in config.types
  for (int i = 0; i < config.types_size(); ++i) {
    const v1::JobTypeConfig& t = config.types(i);
    std::string where = absl::StrCat("types[", i, "]");
    if (absl::Status s = ValidateTypeName(t.name()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".name: ", s.message()));
    }
    absl::StrAppend(&where, " \"", t.name(), "\"");
    auto error = [&where](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
    };
    if (auto [it, inserted] = declared.emplace(t.name(), i); !inserted) {
      return error(absl::StrCat("declared twice (also types[", it->second, "])"));
    }
    JobType type;
    type.name = t.name();
    type.initial_backoff = defaults.initial_backoff;
    if (t.max_attempts() < 0 || t.max_attempts() > 100) {
      return error("maxAttempts must be 1..100 (0 means 3)");
    }
    if (t.max_attempts() != 0) type.max_attempts = t.max_attempts();
    if (t.concurrency() < 0 || t.concurrency() > 10000) {
      return error("concurrency must be 0..10000 (0 means no limit of its own)");
    }
    type.concurrency = t.concurrency();
    if (t.key_concurrency() < 0 || t.key_concurrency() > 10000) {
      return error("keyConcurrency must be 0..10000 (0 means no limit per key)");
    }
    type.key_limit.concurrency = t.key_concurrency();
    // At least one an hour: a key's bucket is then full an hour after its last start,
    // when a PostgreSQL server may forget it.
    if (!(t.key_rate() == 0 || (t.key_rate() >= 0.001 && t.key_rate() <= 100000))) {  // NaN
      return error("keyRate must be 0.001..100000 starts per second (0 means no limit per key)");
    }
    type.key_limit.rate = t.key_rate();
    if (t.default_priority() < -1000 || t.default_priority() > 1000) {
      return error("defaultPriority must be -1000..1000");
    }
    type.default_priority = t.default_priority();
    if (t.description().size() > 1000) return error("description is over 1000 bytes");
    type.description = t.description();
    if (t.has_retry()) {
      if (t.retry().has_initial_backoff()) {
        auto d = DurationWithin(t.retry().initial_backoff(), "retry.initialBackoff",
                                absl::ZeroDuration(), absl::Hours(24));
        if (!d.ok()) return error(d.status().message());
        type.initial_backoff = *d;
      }
      if (t.retry().has_max_backoff()) {
        auto d = DurationWithin(t.retry().max_backoff(), "retry.maxBackoff",
                                type.initial_backoff, absl::Hours(24));
        if (!d.ok()) return error(d.status().message());
        type.max_backoff = *d;
      }
    }
    type.max_backoff = std::max(type.max_backoff, type.initial_backoff);
    const google::protobuf::Duration* timeout = t.has_timeout() ? &t.timeout() : nullptr;
    if (t.has_exec() && t.exec().has_timeout()) {
      if (timeout != nullptr) return error("set timeout or exec.timeout, not both");
      timeout = &t.exec().timeout();
    }
    if (timeout != nullptr) {
      auto d = DurationWithin(*timeout, "timeout", absl::Seconds(1), absl::Hours(24 * 7));
      if (!d.ok()) return error(d.status().message());
      type.timeout = *d;
    }
    switch (t.runner_case()) {
      case v1::JobTypeConfig::kBuiltin:
        if (t.name() != DemoStepsHandler::kType) {
          return error(absl::StrCat("builtin: there is no built-in handler of that name "
                                    "(built in: ", DemoStepsHandler::kType, ")"));
        }
        type.runner = v1::JobTypeInfo::BUILTIN;
        type.handler = demo.get();
        if (type.description.empty()) type.description = demo_type.description;
        break;
      case v1::JobTypeConfig::kExec: {
        auto handler = ExecHandler::Create(t.exec(), t.name());
        if (!handler.ok()) return error(handler.status().message());
        type.runner = v1::JobTypeInfo::EXEC;
        type.handler = handler->get();
        types.handlers_.push_back(*std::move(handler));
        break;
      }
      case v1::JobTypeConfig::kExternal:
        if (t.name() == DemoStepsHandler::kType) {
          return error("demo.steps is built in; it cannot run elsewhere");
        }
        type.runner = v1::JobTypeInfo::EXTERNAL;
        if (t.external().has_lease_duration()) {
          auto d = DurationWithin(t.external().lease_duration(), "external.leaseDuration",
                                  absl::Seconds(1), absl::Hours(1));
          if (!d.ok()) return error(d.status().message());
          type.lease_duration = *d;
        }
        break;
      case v1::JobTypeConfig::RUNNER_NOT_SET:
        return error("say how it runs: \"builtin\": {}, \"exec\": {\"argv\": [...]} or "
                     "\"external\": {}");
    }
    if (t.name() == DemoStepsHandler::kType && type.runner != v1::JobTypeInfo::BUILTIN) {
      return error("demo.steps is built in; declare it with \"builtin\": {}");
    }
    types.types_[t.name()] = std::move(type);
  }
  return types;
}

absl::StatusOr<v1::ServerConfig> JobTypes::ReadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path);
}

absl::StatusOr<v1::ServerConfig> JobTypes::ParseConfig(absl::string_view json,
                                                       absl::string_view source) {
  v1::ServerConfig config;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &config);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", source, ": ", status.message().as_string()));
  }
  return config;
}

const JobType* JobTypes::Find(absl::string_view name) const {
  auto it = types_.find(name);
  return it == types_.end() ? nullptr : &it->second;
}

const JobType& JobTypes::Of(absl::string_view name) const {
  static const JobType* const kUndeclared = new JobType();
  const JobType* type = Find(name);
  return type != nullptr ? *type : *kUndeclared;
}

bool JobTypes::Admits(absl::string_view name, int running) const {
  const JobType* type = Find(name);
  return type != nullptr && (type->concurrency == 0 || running < type->concurrency);
}

std::vector<std::string> JobTypes::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, type] : types_) names.push_back(name);
  return names;
}

std::vector<const JobType*> JobTypes::All() const {
  std::vector<const JobType*> all;
  for (const auto& [name, type] : types_) all.push_back(&type);
  return all;
}

absl::flat_hash_map<std::string, KeyLimit> JobTypes::KeyLimits() const {
  absl::flat_hash_map<std::string, KeyLimit> limits;
  for (const auto& [name, type] : types_) {
    if (type.key_limit.limited()) limits[name] = type.key_limit;
  }
  return limits;
}

std::vector<std::string> JobTypes::InServerTypes() const {
  std::vector<std::string> names;
  for (const auto& [name, type] : types_) {
    if (type.in_server()) names.push_back(name);
  }
  return names;
}

}  // namespace jobstream::jobs
