#include "gateway/routes.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "boost/url/parse.hpp"
#include "boost/url/url_view.hpp"

namespace jobstream::gateway {

std::optional<std::string> Route::Param(const std::string& name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> Route::Params(const std::string& name) const {
  std::vector<std::string> values;
  auto [begin, end] = query.equal_range(name);
  for (auto it = begin; it != end; ++it) values.push_back(it->second);
  return values;
}

namespace {

// The method and path's route, its query parsed but not checked.
std::variant<Route, RouteError> Match(absl::string_view method, absl::string_view target) {
  auto parsed = boost::urls::parse_origin_form(boost::core::string_view(target.data(), target.size()));
  if (!parsed) {
    return RouteError{400, "the request target is not a valid path and query", ""};
  }
  const boost::urls::url_view& url = *parsed;
  std::vector<std::string> segments;
  for (auto segment : url.segments()) segments.push_back(std::string(segment));
  Route route;
  for (auto param : url.params()) {
    route.query.emplace(std::string(param.key), param.has_value ? std::string(param.value) : "");
  }
  auto allow = [&](std::string allowed) -> std::variant<Route, RouteError> {
    return RouteError{405, absl::StrCat(method, " is not allowed here; use ", allowed), allowed};
  };
  auto is = [&](std::initializer_list<absl::string_view> want) {
    if (segments.size() != want.size()) return false;
    size_t i = 0;
    for (absl::string_view w : want) {
      if (!w.empty() && segments[i] != w) return false;  // empty: any non-empty value
      if (w.empty() && segments[i].empty()) return false;
      ++i;
    }
    return true;
  };
  if (is({"v1", "jobs"})) {
    if (method == "GET") return route.kind = RouteKind::kListJobs, route;
    if (method == "POST") return route.kind = RouteKind::kSubmit, route;
    return allow("GET, POST");
  }
  for (auto [path, kind] : {std::pair{absl::string_view("jobs:batch"), RouteKind::kSubmitBatch},
                            std::pair{absl::string_view("jobs:bulkCancel"), RouteKind::kBulkCancel},
                            std::pair{absl::string_view("jobs:bulkRetry"), RouteKind::kBulkRetry},
                            std::pair{absl::string_view("jobs:bulkDelete"), RouteKind::kBulkDelete}}) {
    if (!is({"v1", path})) continue;
    if (method == "POST") return route.kind = kind, route;
    return allow("POST");
  }
  if (is({"v1", "jobs", ""})) {
    std::string last = segments[2];
    for (auto [suffix, kind] : {std::pair{absl::string_view(":cancel"), RouteKind::kCancelJob},
                                std::pair{absl::string_view(":retry"), RouteKind::kRetryJob}}) {
      if (!absl::EndsWith(last, suffix)) continue;
      route.job_id = last.substr(0, last.size() - suffix.size());
      if (route.job_id.empty()) {
        return RouteError{404, absl::StrCat("no job id before ", suffix), ""};
      }
      if (method == "POST") return route.kind = kind, route;
      return allow("POST");
    }
    if (absl::EndsWith(last, ":wait")) {
      route.job_id = last.substr(0, last.size() - 5);
      if (route.job_id.empty()) return RouteError{404, "no job id before :wait", ""};
      if (method == "GET") return route.kind = RouteKind::kWaitJob, route;
      return allow("GET");
    }
    route.job_id = last;
    if (method == "GET") return route.kind = RouteKind::kGetJob, route;
    if (method == "DELETE") return route.kind = RouteKind::kDeleteJob, route;
    return allow("GET, DELETE");
  }
  if (is({"v1", "jobs", "", "events"})) {
    route.job_id = segments[2];
    if (method == "GET") return route.kind = RouteKind::kJobEvents, route;
    return allow("GET");
  }
  if (is({"v1", "jobs", "", "ws"})) {
    route.job_id = segments[2];
    if (method == "GET") return route.kind = RouteKind::kJobWs, route;
    return allow("GET");
  }
  if (is({"v1", "jobs", "", "result"})) {
    route.job_id = segments[2];
    if (method == "GET") return route.kind = RouteKind::kJobResult, route;
    return allow("GET");
  }
  if (is({"v1", "jobs", "", "artifacts", ""})) {
    route.job_id = segments[2];
    route.artifact = segments[4];
    route.head = method == "HEAD";
    if (method == "GET" || method == "HEAD") return route.kind = RouteKind::kArtifact, route;
    return allow("GET, HEAD");
  }
  if (is({"v1", "schedules"})) {
    if (method == "GET") return route.kind = RouteKind::kListSchedules, route;
    if (method == "POST") return route.kind = RouteKind::kCreateSchedule, route;
    return allow("GET, POST");
  }
  if (is({"v1", "schedules", ""})) {
    const std::string& last = segments[2];
    for (auto [suffix, kind] : {std::pair{absl::string_view(":pause"), RouteKind::kPauseSchedule},
                                {":resume", RouteKind::kResumeSchedule},
                                {":trigger", RouteKind::kTriggerSchedule}}) {
      if (!absl::EndsWith(last, suffix)) continue;
      route.schedule_id = last.substr(0, last.size() - suffix.size());
      if (route.schedule_id.empty()) {
        return RouteError{404, absl::StrCat("no schedule id before ", suffix), ""};
      }
      if (method == "POST") return route.kind = kind, route;
      return allow("POST");
    }
    route.schedule_id = last;
    if (method == "GET") return route.kind = RouteKind::kGetSchedule, route;
    if (method == "PUT") return route.kind = RouteKind::kUpdateSchedule, route;
    if (method == "DELETE") return route.kind = RouteKind::kDeleteSchedule, route;
    return allow("GET, PUT, DELETE");
  }
  if (is({"v1", "types", ""})) {
    const std::string& last = segments[2];
    for (auto [suffix, kind] : {std::pair{absl::string_view(":pause"), RouteKind::kPauseType},
                                {":resume", RouteKind::kResumeType}}) {
      if (!absl::EndsWith(last, suffix)) continue;
      route.type = last.substr(0, last.size() - suffix.size());
      if (route.type.empty()) return RouteError{404, absl::StrCat("no type before ", suffix), ""};
      if (method == "POST") return route.kind = kind, route;
      return allow("POST");
    }
    return RouteError{404, absl::StrCat("no route for ", url.path(),
                                        ": a type takes :pause or :resume"), ""};
  }
  auto get_only = [&](RouteKind kind) -> std::variant<Route, RouteError> {
    if (method == "GET") return route.kind = kind, route;
    return allow("GET");
  };
  if (is({"v1", "session"})) {
    if (method == "GET" || method == "POST" || method == "DELETE") {
      return route.kind = RouteKind::kSession, route;
    }
    return allow("GET, POST, DELETE");
  }
  if (is({"v1", "events"})) return get_only(RouteKind::kAllEvents);
  if (is({"v1", "types"})) return get_only(RouteKind::kListTypes);
  if (is({"v1", "stats"})) return get_only(RouteKind::kJobStats);
  if (is({"v1", "ws"})) return get_only(RouteKind::kAllWs);
  if (segments.empty() || (segments.size() == 1 && segments[0].empty())) {
    route.asset.push_back('/');  // not = "/": GCC 12 raises a false -Wrestrict on it
    return get_only(RouteKind::kAsset);
  }
  if (is({"static", ""})) {
    route.asset = absl::StrCat("/static/", segments[1]);
    return get_only(RouteKind::kAsset);
  }
  if (is({"healthz"})) return get_only(RouteKind::kHealth);
  if (is({"metrics"})) return get_only(RouteKind::kMetrics);
  return RouteError{404, absl::StrCat("no route for ", url.path()), ""};
}

// The query parameters a route takes.
std::vector<absl::string_view> KnownParams(RouteKind kind) {
  switch (kind) {
    case RouteKind::kListJobs:
      return {"state", "type", "label", "pageSize", "pageToken", "createdAfter", "createdBefore"};
    case RouteKind::kListSchedules:
      return {"pageSize", "pageToken"};
    case RouteKind::kWaitJob:
      return {"timeout"};
    case RouteKind::kArtifact:
      return {"download", "v"};  // v: the page's cache key (the sha256), otherwise unused
    case RouteKind::kJobEvents:
    case RouteKind::kJobWs:
      return {"after"};
    case RouteKind::kAllEvents:
    case RouteKind::kAllWs:
      return {"type", "label", "state"};
    default:
      return {};
  }
}

}  // namespace

std::variant<Route, RouteError> ParseRoute(absl::string_view method, absl::string_view target) {
  std::variant<Route, RouteError> matched = Match(method, target);
  Route* route = std::get_if<Route>(&matched);
  // A link to the page may carry a query of its own (say, a campaign's): it is the page.
  if (route == nullptr || route->kind == RouteKind::kAsset) return matched;
  const std::vector<absl::string_view> known = KnownParams(route->kind);
  for (const auto& [name, value] : route->query) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    const size_t path_end = std::min(target.find('?'), target.size());
    return RouteError{
        400,
        absl::StrCat("unknown query parameter \"", absl::CHexEscape(name.substr(0, 40)), "\": ",
                     method, " ", target.substr(0, std::min<size_t>(path_end, 200)),
                     known.empty() ? " takes none" : " takes " + absl::StrJoin(known, ", ")),
        ""};
  }
  return matched;
}

absl::StatusOr<std::vector<v1::Job::State>> QueryStates(const Route& route) {
  std::vector<v1::Job::State> states;
  for (const std::string& value : route.Params("state")) {
    for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      v1::Job::State state;
      if (!v1::Job::State_Parse(absl::AsciiStrToUpper(name), &state) ||
          state == v1::Job::STATE_UNSPECIFIED) {
        return absl::InvalidArgumentError(
            absl::StrCat("state \"", absl::CHexEscape(name.substr(0, 40)),
                         "\" is not one of WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED"));
      }
      states.push_back(state);
    }
  }
  return states;
}

absl::StatusOr<std::map<std::string, std::string>> QueryLabels(const Route& route) {
  std::map<std::string, std::string> labels;
  for (const std::string& label : route.Params("label")) {
    std::vector<std::string> kv = absl::StrSplit(label, absl::MaxSplits(':', 1));
    if (kv.size() != 2) return absl::InvalidArgumentError("label takes key:value");
    labels[kv[0]] = kv[1];
  }
  return labels;
}

absl::StatusOr<v1::WatchJobsRequest> QueryWatchFilter(const Route& route) {
  v1::WatchJobsRequest request;
  for (const std::string& type : route.Params("type")) request.add_types(type);
  auto labels = QueryLabels(route);
  if (!labels.ok()) return labels.status();
  request.mutable_labels()->insert(labels->begin(), labels->end());
  auto states = QueryStates(route);
  if (!states.ok()) return states.status();
  for (v1::Job::State state : *states) request.add_states(state);
  return request;
}

}  // namespace jobstream::gateway
