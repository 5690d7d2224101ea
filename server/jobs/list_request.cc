#include "server/jobs/list_request.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/ids.h"
#include "server/jobs/validation.h"
#include "server/storage/keys.h"

namespace jobstream::jobs {

absl::StatusOr<ListQuery> ParseListJobs(const v1::ListJobsRequest& request,
                                        const auth::Scope& scope) {
  if (request.page_size() < 0 || request.page_size() > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", request.page_size(), " is outside 0..1000"));
  }
  if (absl::Status s = ValidateStates(request.states()); !s.ok()) return s;
  if (absl::Status s = ValidateLabels(request.labels()); !s.ok()) return s;
  if (!request.type().empty()) {
    if (absl::Status s = ValidateTypeName(request.type()); !s.ok()) return s;
  }
  ListQuery query;
  if (!request.page_token().empty()) {
    bool ok = absl::WebSafeBase64Unescape(request.page_token(), &query.start) &&
              query.start.size() == storage::kByTimeKeyLength &&
              ValidateJobId(absl::string_view(query.start).substr(8)).ok();
    if (!ok) {
      return absl::InvalidArgumentError(
          "page_token is not one this server issued; pass next_page_token unchanged");
    }
  }
  // A time range: created_before is where the newest-first read starts (unless a page
  // token is further on), created_after where it ends.
  if (request.has_created_before()) {
    const std::string before = storage::ByTimeKey(
        absl::ToUnixMillis(v1::ToTime(request.created_before())), std::string(26, '0'));
    if (query.start.empty() || before < query.start) query.start = before;
  }
  if (request.has_created_after()) {
    query.after_ms = absl::ToUnixMillis(v1::ToTime(request.created_after()));
    if (request.has_created_before() &&
        v1::ToTime(request.created_after()) >= v1::ToTime(request.created_before())) {
      return absl::InvalidArgumentError("created_after must be before created_before");
    }
  }
  query.filter.scope = scope;
  for (int s : request.states()) {
    query.filter.states.insert(s);
    query.states.insert(s);
  }
  if (!request.type().empty()) query.filter.types.insert(request.type());
  for (const auto& [k, v] : request.labels()) query.filter.labels[k] = v;
  query.type = request.type();
  query.page_size = request.page_size() == 0 ? 50 : request.page_size();
  return query;
}

std::string PageToken(absl::string_view position) { return absl::WebSafeBase64Escape(position); }

}  // namespace jobstream::jobs
