#include "server/jobs/list_request.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
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
