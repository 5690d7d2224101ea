// A ListJobs request checked and turned into what a manager reads: said once for both.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "jobstream/v1/jobs.pb.h"
#include "server/auth/scope.h"
#include "server/watch/subscription.h"

namespace jobstream::jobs {

struct ListQuery {
  watch::JobFilter filter;  // the caller's scope, states, type and labels
  std::set<int> states;     // as asked (empty: all)
  std::string type;         // as asked (empty: all)
  size_t page_size = 50;
  // Where the previous page stopped: a position (storage::ByTimeKey: create time | id) to
  // continue strictly before, newest first; empty starts with the newest job.
  std::string start;
  // Jobs created before this are past the end (created_after); INT64_MIN: none.
  int64_t after_ms = INT64_MIN;
};

absl::StatusOr<ListQuery> ParseListJobs(const v1::ListJobsRequest& request,
                                        const auth::Scope& scope);

// The page token that continues before `position`.
std::string PageToken(absl::string_view position);

}  // namespace jobstream::jobs
