// Route: which API call an HTTP request is, parsed from its method and target (with
// Boost.URL: percent-decoding and the query string). No I/O, so hostile targets are unit
// tested directly.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::gateway {

enum class RouteKind {
  kSession,    // GET, POST or DELETE /v1/session
  kSubmit,     // POST   /v1/jobs
  kSubmitBatch,  // POST /v1/jobs:batch
  kBulkCancel,   // POST /v1/jobs:bulkCancel  {"filter", "reason", "dryRun", "limit"}
  kBulkRetry,    // POST /v1/jobs:bulkRetry   (the same)
  kBulkDelete,   // POST /v1/jobs:bulkDelete  (the same)
  kListJobs,   // GET    /v1/jobs
  kGetJob,     // GET    /v1/jobs/{id}
  kDeleteJob,  // DELETE /v1/jobs/{id}
  kCancelJob,  // POST   /v1/jobs/{id}:cancel  {"reason": "…"} (optional)
  kRetryJob,   // POST   /v1/jobs/{id}:retry   {"reason", "asNew", "params"} (optional)
  kWaitJob,    // GET    /v1/jobs/{id}:wait?timeout=30s
  kJobResult,  // GET    /v1/jobs/{id}/result
  kArtifact,   // GET or HEAD /v1/jobs/{id}/artifacts/{name}
  kJobEvents,  // GET    /v1/jobs/{id}/events   (SSE)
  kAllEvents,  // GET    /v1/events             (SSE)
  kJobWs,      // GET    /v1/jobs/{id}/ws       (WebSocket)
  kAllWs,      // GET    /v1/ws                 (WebSocket)
  kListTypes,  // GET    /v1/types
  kJobStats,   // GET    /v1/stats            (GetJobStats: the page's charts)
  kPauseType,   // POST   /v1/types/{type}:pause   {"reason": "…"} (optional)
  kResumeType,  // POST   /v1/types/{type}:resume
  kListSchedules,    // GET    /v1/schedules
  kCreateSchedule,   // POST   /v1/schedules
  kGetSchedule,      // GET    /v1/schedules/{id}
  kUpdateSchedule,   // PUT    /v1/schedules/{id}
  kDeleteSchedule,   // DELETE /v1/schedules/{id}
  kPauseSchedule,    // POST   /v1/schedules/{id}:pause
  kResumeSchedule,   // POST   /v1/schedules/{id}:resume
  kTriggerSchedule,  // POST   /v1/schedules/{id}:trigger
  kHealth,     // GET    /healthz
  kMetrics,    // GET    /metrics
  kAsset,      // GET    / and /static/NAME  (the web page)
};

struct Route {
  RouteKind kind;
  std::string job_id;  // percent-decoded; checked by the server
  std::string schedule_id;  // the same
  std::string type;         // kPauseType, kResumeType: the same
  std::string asset;   // kAsset: "/" or "/static/NAME"
  std::string artifact;  // kArtifact: the name, percent-decoded; checked by the server
  bool head = false;     // a HEAD request (kArtifact): headers only
  std::multimap<std::string, std::string> query;  // percent-decoded
  std::optional<std::string> Param(const std::string& name) const;
  std::vector<std::string> Params(const std::string& name) const;
};

struct RouteError {
  int http_status;     // 400, 404 or 405
  std::string message;
  std::string allow;   // for 405: the methods the path takes
};

// A query parameter the route does not take is a 400 naming the ones it does (a misspelt
// filter would otherwise match everything); the page's own paths ignore the query.
std::variant<Route, RouteError> ParseRoute(absl::string_view method, absl::string_view target);

// The states a query names (`state`: repeatable, each a comma-separated list of names in
// any case), or INVALID_ARGUMENT naming the one that is not a state.
absl::StatusOr<std::vector<v1::Job::State>> QueryStates(const Route& route);
// The labels a query names (`label`: repeatable, key:value), or INVALID_ARGUMENT.
absl::StatusOr<std::map<std::string, std::string>> QueryLabels(const Route& route);
// The filter of /v1/events and /v1/ws: `type` (repeatable), `label` and `state`.
absl::StatusOr<v1::WatchJobsRequest> QueryWatchFilter(const Route& route);

}  // namespace jobstream::gateway
