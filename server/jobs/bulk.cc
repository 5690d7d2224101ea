// Bulk operations (BulkCancel, BulkRetry, BulkDelete): a filter's jobs read a page at a
// time through List, each page's jobs changed through the store's own Cancel, Retry or
// Delete — all of a page in flight at once, so the store writes them in few commits —
// and the next page read once they are written. Any store's, through JobBackend.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/job_backend.h"
#include "server/jobs/transitions.h"
#include "server/jobs/validation.h"

namespace jobstream::jobs {

using v1::Job;

namespace {

constexpr int kPage = 500;

bool Takes(BulkOp op, const Job& job) {
  switch (op) {
    case BulkOp::kCancel:
      return !v1::IsFinished(job.state()) && !job.cancel_requested();
    case BulkOp::kRetry:
      return CheckRetry(job).ok();
    case BulkOp::kDelete:
      return v1::IsFinished(job.state());
  }
  return false;
}

// The states an operation takes: read when the filter names none.
std::vector<Job::State> StatesOf(BulkOp op) {
  switch (op) {
    case BulkOp::kCancel: return {Job::WAITING, Job::QUEUED, Job::RUNNING};
    case BulkOp::kRetry: return {Job::FAILED, Job::CANCELLED};
    case BulkOp::kDelete: return {Job::SUCCEEDED, Job::FAILED, Job::CANCELLED};
  }
  return {};
}

// The answers of one page's calls.
class PageCalls {
 public:
  void Add() {
    absl::MutexLock lock(&mu_);
    ++pending_;
  }
  void Done(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    results_.push_back(status);
    --pending_;
  }
  std::vector<absl::Status> Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* pending) { return *pending == 0; }, &pending_));
    return std::move(results_);
  }

 private:
  absl::Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::Status> results_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::vector<absl::Status> JobBackend::ChangeMany(BulkOp op, const std::vector<std::string>& ids,
                                                 const v1::OperatorAction& action,
                                                 const auth::Scope& scope) {
  PageCalls calls;
  for (const std::string& id : ids) {
    calls.Add();
    switch (op) {
      case BulkOp::kCancel:
        Cancel(id, action, scope, [&calls](absl::StatusOr<Job> j) { calls.Done(j.status()); });
        break;
      case BulkOp::kRetry:
        Retry(id, action, scope, [&calls](absl::StatusOr<Job> j) { calls.Done(j.status()); });
        break;
      case BulkOp::kDelete:
        Delete(id, scope, [&calls](absl::Status s) { calls.Done(s); });
        break;
    }
  }
  return calls.Wait();
}

absl::StatusOr<v1::BulkResponse> JobBackend::Bulk(BulkOp op, const v1::BulkRequest& request,
                                                   const std::string& by,
                                                   const auth::Scope& caller) {
  if (absl::Status s = ValidateReason(request.reason()); !s.ok()) return s;
  if (request.limit() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit is ", request.limit(),
                                                   "; it must be 0 (all) or more"));
  }
  const v1::JobFilter& filter = request.filter();
  auth::Scope scope = caller;
  if (!filter.tenant().empty()) {
    if (!caller.all_tenants && filter.tenant() != caller.tenant) {
      return absl::PermissionDeniedError(
          "filter.tenant is for admin tokens; others act within their own tenant");
    }
    scope = auth::Scope::Tenant(filter.tenant());
  }
  const bool after = filter.has_created_after(), before = filter.has_created_before();
  const absl::Time created_after = v1::ToTime(filter.created_after());
  const absl::Time created_before = v1::ToTime(filter.created_before());
  if (after && before && created_after >= created_before) {
    return absl::InvalidArgumentError("filter.created_after must be before created_before");
  }

  v1::ListJobsRequest list;
  if (filter.states().empty()) {
    for (Job::State state : StatesOf(op)) list.add_states(state);
  } else {
    *list.mutable_states() = filter.states();
  }
  list.set_type(filter.type());
  *list.mutable_labels() = filter.labels();
  if (after) *list.mutable_created_after() = filter.created_after();
  if (before) *list.mutable_created_before() = filter.created_before();
  list.set_page_size(kPage);

  const char* action = op == BulkOp::kCancel ? "cancel" : op == BulkOp::kRetry ? "retry" : "delete";
  const int64_t limit = request.limit() > 0 ? request.limit() : INT64_MAX;
  v1::BulkResponse counts;
  bool older = false;  // newest first: past created_after, nothing more can match
  do {
    if (bulk_stopping_.load()) {
      return absl::UnavailableError(absl::StrCat(
          "the server is shutting down (after ", counts.changed(),
          " jobs were changed); call again once it is back: the call is idempotent"));
    }
    auto page = List(list, scope);
    if (!page.ok()) return page.status();
    std::vector<std::string> ids;
    for (const Job& job : page->jobs()) {
      const absl::Time created = v1::ToTime(job.create_time());
      if (after && created < created_after) {
        older = true;
        break;
      }
      if (before && created >= created_before) continue;
      counts.set_matched(counts.matched() + 1);
      if (!Takes(op, job)) {
        counts.set_skipped(counts.skipped() + 1);
        continue;
      }
      if (counts.changed() >= limit) break;
      counts.set_changed(counts.changed() + 1);  // taken back below if it fails
      if (!request.dry_run()) ids.push_back(job.id());
    }
    absl::Status stopped;
    const v1::OperatorAction made = ActionOf(action, by, request.reason(), absl::Now(), 0);
    for (const absl::Status& s : ids.empty() ? std::vector<absl::Status>()
                                             : ChangeMany(op, ids, made, scope)) {
      if (s.ok()) continue;
      counts.set_changed(counts.changed() - 1);
      // Moved meanwhile (ended, started, removed): as if it had not matched as it was.
      if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s) || absl::IsAborted(s)) {
        counts.set_skipped(counts.skipped() + 1);
      } else if (stopped.ok()) {
        stopped = s;
      }
    }
    if (!stopped.ok()) {
      return absl::Status(stopped.code(),
                          absl::StrCat(stopped.message(), " (after ", counts.changed(),
                                       " jobs were changed; call again to go on)"));
    }
    list.set_page_token(page->next_page_token());
  } while (!list.page_token().empty() && !older && counts.changed() < limit);
  return counts;
}

}  // namespace jobstream::jobs
