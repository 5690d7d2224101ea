// JobTypes: the declared job types. demo.steps is always there; --config adds more, each
// run one of three ways: BUILTIN (a handler compiled in), EXEC (a configured program the
// server starts per attempt) or EXTERNAL (workers lease jobs through WorkerService).
// A Submit of any other type is refused, naming the known ones.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "jobstream/v1/config.pb.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/jobs/handler.h"
#include "server/jobs/job_queue.h"

namespace jobstream::jobs {

struct JobType {
  std::string name;
  v1::JobTypeInfo::Runner runner = v1::JobTypeInfo::BUILTIN;
  std::string description;
  int max_attempts = 3;
  int concurrency = 0;  // 0: no limit of its own
  KeyLimit key_limit;  // per concurrency_key
  int default_priority = 0;
  absl::Duration timeout = absl::InfiniteDuration();  // per attempt
  absl::Duration lease_duration = absl::Seconds(30);  // EXTERNAL
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  const Handler* handler = nullptr;  // BUILTIN and EXEC: runs in the server

  bool in_server() const { return handler != nullptr; }
  // The delay before attempt `attempt` + 1: initial_backoff doubled per attempt,
  // ±25% jitter, at most max_backoff.
  absl::Duration Backoff(int attempt) const;
  // What ListJobTypes shows, without the counters.
  v1::JobTypeInfo Info() const;
};

// ListJobTypes shows at most this many keys at their limit per type.
constexpr size_t kKeysAtLimitShown = 100;
v1::KeyAtLimit KeyAtLimitInfo(const KeyAtLimit& key);

struct TypeDefaults {
  absl::Duration initial_backoff = absl::Seconds(1);
};

class JobTypes {
 public:
  // The built-ins plus the types `config` declares. INVALID_ARGUMENT for a bad config,
  // naming the type, the field and the rule (e.g. `types[1] "render": exec.argv[0]
  // "/opt/render.sh" does not exist`).
  static absl::StatusOr<JobTypes> FromConfig(const v1::ServerConfig& config,
                                             TypeDefaults defaults = {});
  // Reads a ServerConfig from a proto3 JSON file; errors name the file.
  static absl::StatusOr<v1::ServerConfig> ReadConfigFile(const std::string& path);
  // The same from the file's text; errors name `source`.
  static absl::StatusOr<v1::ServerConfig> ParseConfig(absl::string_view json,
                                                      absl::string_view source);

  const JobType* Find(absl::string_view name) const;
  // The type of a stored job. One removed from the config since the job was made runs
  // nowhere; its jobs get the defaults, so they can still be cancelled, expire and fail.
  const JobType& Of(absl::string_view name) const;
  // Whether one more job of `name` may run beside `running` of it: declared, and under
  // its concurrency (if it has one).
  bool Admits(absl::string_view name, int running) const;
  std::vector<std::string> Names() const;
  std::vector<const JobType*> All() const;
  // The per-key limits of the types that have any.
  absl::flat_hash_map<std::string, KeyLimit> KeyLimits() const;
  // Types run by in-server handlers (BUILTIN and EXEC).
  std::vector<std::string> InServerTypes() const;

 private:
  std::vector<std::shared_ptr<const Handler>> handlers_;
  std::map<std::string, JobType, std::less<>> types_;
};

// OK for a well-formed type name: 1..64 characters of [a-z0-9._-], first a letter or digit.
absl::Status ValidateTypeName(absl::string_view name);
// 1 to max_size characters of a-z 0-9 . _ -, starting with a letter or digit: the form of
// type names and schedule ids.
bool IsPlainName(absl::string_view name, size_t max_size);

}  // namespace jobstream::jobs
