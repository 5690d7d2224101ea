#include "server/schedules/schedule_manager.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "jobstream/v1/job_states.h"
#include "server/jobs/ids.h"

namespace jobstream::schedules {
namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr int kShownFireTimes = 5;
constexpr int kDuePerTurn = 1000;
// A fire that could not submit its job is tried again this much later.
constexpr absl::Duration kRetryFire = absl::Seconds(5);
constexpr char kLabelPrefix[] = "jobstream/";

absl::Status ValidateId(const std::string& id) {
  const bool ok = jobs::IsPlainName(id, 63);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "schedule.id \"", absl::CHexEscape(id.substr(0, 80)),
      "\" must be 1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or "
      "digit (or empty, for one the server chooses)"));
}

absl::Status RequireId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  return absl::OkStatus();
}

std::string PageToken(const v1::Schedule& last) {
  return absl::WebSafeBase64Escape(absl::StrCat(last.tenant(), absl::string_view("\0", 1),
                                                last.id()));
}

// The Submit a template makes (the server's labels and request id are added per fire).
v1::SubmitRequest SubmitOf(const v1::JobTemplate& job) {
  v1::SubmitRequest submit;
  submit.set_type(job.type());
  *submit.mutable_params() = job.params();
  *submit.mutable_labels() = job.labels();
  submit.set_priority(job.priority());
  submit.set_max_attempts(job.max_attempts());
  submit.set_concurrency_key(job.concurrency_key());
  return submit;
}

// A fire time as its label and messages show it: RFC 3339, UTC, whole seconds.
std::string FireTimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// A stored schedule's timetable, checked as of when it was last set (its interval's start
// time is kept, so nothing else depends on that time).
absl::StatusOr<Timetable> StoredTimetable(const v1::Schedule& schedule) {
  return Timetable::Of(schedule, v1::ToTime(schedule.update_time()));
}

// When to look at a stored schedule next (planner.h).
std::optional<absl::Time> StoredWake(const v1::Schedule& schedule, const FireState& state,
                                     absl::Time now) {
  absl::StatusOr<Timetable> table = StoredTimetable(schedule);
  if (!table.ok()) return std::nullopt;
  return WakeOf(schedule, *table, state, now);
}

// A fire whose submit failed like this is tried again later; any other failure (its type
// removed from the config, say) would fail again, so the fire is skipped with its error.
bool RetryableSubmitError(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsAborted(status) || absl::IsInternal(status) ||
         absl::IsResourceExhausted(status) || absl::IsUnknown(status);
}

void LogWriteError(const StoredSchedule& s, const absl::Status& written) {
  if (written.ok() || absl::IsNotFound(written)) return;
  std::cerr << "jobstream-server: schedule " << s.schedule.id() << ": " << written << "\n";
}

}  // namespace

absl::Status ScheduleManager::SetFields(const v1::Schedule& in, absl::Time now,
                                        v1::Schedule* out) const {
  v1::Schedule timetable;
  timetable.set_cron(in.cron());
  timetable.set_time_zone(in.time_zone());
  if (in.has_interval()) *timetable.mutable_interval() = in.interval();
  if (in.has_start_time()) *timetable.mutable_start_time() = in.start_time();
  absl::StatusOr<Timetable> table = Timetable::Of(timetable, now);
  if (!table.ok()) return table.status();
  // An interval's anchor is kept, so its fire times stay where they were set.
  if (timetable.has_interval() && !timetable.has_start_time()) {
    *timetable.mutable_start_time() = v1::ToProto(*table->Next(now - absl::Seconds(1)));
  }

  const v1::JobTemplate& job = in.job();
  if (job.type().empty()) return absl::InvalidArgumentError("schedule.job.type is required");
  for (const auto& [key, value] : job.labels()) {
    if (absl::StartsWith(key, kLabelPrefix)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schedule.job.labels: \"", key, "\": keys starting \"jobstream/\" are the server's own"));
    }
  }
  if (absl::Status s = jobs::ValidateSubmit(SubmitOf(job), *types_, limits_, now); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("schedule.job: ", s.message()));
  }
  absl::StatusOr<absl::Duration> jitter =
      jobs::DurationWithin(in.jitter(), "schedule.jitter", absl::ZeroDuration(), absl::Hours(1));
  if (!jitter.ok()) return jitter.status();
  if (!v1::Schedule::OverlapPolicy_IsValid(in.overlap())) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule.overlap ", in.overlap(), " is not SKIP, QUEUE_ONE or ALLOW"));
  }
  if (!v1::Schedule::CatchUpPolicy_IsValid(in.catch_up())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule.catch_up ", in.catch_up(), " is not SKIP_MISSED, RUN_ONCE or RUN_ALL"));
  }
  if (in.catch_up_limit() < 0 || in.catch_up_limit() > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule.catch_up_limit ", in.catch_up_limit(), " must be 0 to 1000"));
  }

  out->set_cron(timetable.cron());
  out->set_time_zone(timetable.time_zone());
  out->clear_interval();
  out->clear_start_time();
  if (timetable.has_interval()) {
    *out->mutable_interval() = timetable.interval();
    *out->mutable_start_time() = timetable.start_time();
  }
  *out->mutable_job() = job;
  if (in.has_jitter()) {
    *out->mutable_jitter() = in.jitter();
  } else {
    out->clear_jitter();
  }
  out->set_overlap(in.overlap() == v1::Schedule::OVERLAP_POLICY_UNSPECIFIED ? v1::Schedule::SKIP
                                                                           : in.overlap());
  out->set_catch_up(in.catch_up() == v1::Schedule::CATCH_UP_POLICY_UNSPECIFIED
                        ? v1::Schedule::SKIP_MISSED
                        : in.catch_up());
  out->set_catch_up_limit(in.catch_up_limit() == 0 ? kDefaultCatchUpLimit : in.catch_up_limit());
  *out->mutable_update_time() = v1::ToProto(now);
  return absl::OkStatus();
}

v1::Schedule ScheduleManager::Show(const StoredSchedule& s, absl::Time now) const {
  v1::Schedule out = s.schedule;
  if (!out.paused()) {
    absl::StatusOr<Timetable> table = StoredTimetable(out);
    absl::Time after = s.state.handled_until;
    for (int i = 0; table.ok() && i < kShownFireTimes; ++i) {
      std::optional<absl::Time> next = table->Next(after);
      if (!next) break;
      *out.add_next_fire_times() = v1::ToProto(*next);
      after = *next;
    }
  }
  if (std::optional<v1::Job::State> state = LastJobState(out)) out.set_last_job_state(*state);
  return out;
}

absl::StatusOr<StoredSchedule> ScheduleManager::Find(const std::string& id,
                                                     const auth::Scope& scope) const {
  if (absl::Status s = RequireId(id); !s.ok()) return s;
  return store_->Get(scope.tenant, id);
}

absl::StatusOr<v1::Schedule> ScheduleManager::Create(const v1::CreateScheduleRequest& request,
                                                     const auth::Scope& scope) {
  const absl::Time now = absl::Now();
  StoredSchedule s;
  v1::Schedule& schedule = s.schedule;
  const std::string& id = request.schedule().id();
  if (!id.empty()) {
    if (absl::Status st = ValidateId(id); !st.ok()) return st;
    schedule.set_id(id);
  } else {
    schedule.set_id(absl::AsciiStrToLower(jobs::NewJobId(now)));
  }
  schedule.set_tenant(scope.tenant);
  *schedule.mutable_create_time() = v1::ToProto(now);
  if (absl::Status st = SetFields(request.schedule(), now, &schedule); !st.ok()) return st;
  schedule.set_paused(request.paused());
  s.state.handled_until = now;
  s.wake = StoredWake(schedule, s.state, now);
  if (absl::Status st = store_->Create(s); !st.ok()) return st;
  return Show(s, now);
}

absl::StatusOr<v1::Schedule> ScheduleManager::Get(const std::string& id,
                                                  const auth::Scope& scope) const {
  absl::StatusOr<StoredSchedule> s = Find(id, scope);
  if (!s.ok()) return s.status();
  return Show(*s, absl::Now());
}

absl::StatusOr<v1::ListSchedulesResponse> ScheduleManager::List(
    const v1::ListSchedulesRequest& request, const auth::Scope& scope) const {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", request.page_size(), " must be 0 to ", kMaxPageSize));
  }
  const int size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  std::string after_tenant, after_id;
  if (!request.page_token().empty()) {
    std::string raw;
    const size_t zero = absl::WebSafeBase64Unescape(request.page_token(), &raw)
                            ? raw.find('\0')
                            : std::string::npos;
    if (zero == std::string::npos) {
      return absl::InvalidArgumentError("page_token is not one a ListSchedules response gave");
    }
    after_tenant = raw.substr(0, zero);
    after_id = raw.substr(zero + 1);
    if (!scope.Sees(after_tenant)) {
      return absl::InvalidArgumentError("page_token is not one a ListSchedules response gave");
    }
  }
  absl::StatusOr<std::vector<StoredSchedule>> page =
      store_->List(scope, after_tenant, after_id, size + 1);
  if (!page.ok()) return page.status();
  v1::ListSchedulesResponse response;
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < page->size() && static_cast<int>(i) < size; ++i) {
    *response.add_schedules() = Show((*page)[i], now);
  }
  if (static_cast<int>(page->size()) > size) {
    response.set_next_page_token(PageToken(response.schedules(size - 1)));
  }
  return response;
}

absl::StatusOr<StoredSchedule> ScheduleManager::Change(
    const std::string& id, const auth::Scope& scope,
    const std::function<absl::Status(StoredSchedule&)>& fn) {
  for (;;) {
    absl::StatusOr<StoredSchedule> s = Find(id, scope);
    if (!s.ok()) return s.status();
    if (absl::Status st = fn(*s); !st.ok()) return st;
    absl::Status written = store_->Update(*s);
    if (written.ok()) return s;
    if (!absl::IsAborted(written)) return written;
  }
}

absl::StatusOr<v1::Schedule> ScheduleManager::Update(const v1::UpdateScheduleRequest& request,
                                                     const auth::Scope& scope) {
  const absl::Time now = absl::Now();
  absl::StatusOr<StoredSchedule> s =
      Change(request.schedule().id(), scope, [&](StoredSchedule& s) {
        if (absl::Status st = SetFields(request.schedule(), now, &s.schedule); !st.ok()) {
          return st;
        }
        s.state.handled_until = std::max(s.state.handled_until, now);
        s.wake = StoredWake(s.schedule, s.state, now);
        return absl::OkStatus();
      });
  if (!s.ok()) return s.status();
  return Show(*s, now);
}

absl::StatusOr<v1::Schedule> ScheduleManager::SetPaused(const std::string& id, bool paused,
                                                        const auth::Scope& scope) {
  const absl::Time now = absl::Now();
  absl::StatusOr<StoredSchedule> s = Change(id, scope, [&](StoredSchedule& s) {
    if (s.schedule.paused() != paused) {
      s.schedule.set_paused(paused);
      *s.schedule.mutable_update_time() = v1::ToProto(now);
      // Fire times that passed while paused are not caught up.
      if (!paused) s.state.handled_until = std::max(s.state.handled_until, now);
    }
    s.wake = StoredWake(s.schedule, s.state, now);
    return absl::OkStatus();
  });
  if (!s.ok()) return s.status();
  return Show(*s, now);
}

absl::Status ScheduleManager::Delete(const std::string& id, const auth::Scope& scope) {
  if (absl::Status s = RequireId(id); !s.ok()) return s;
  return store_->Delete(scope.tenant, id);
}

absl::StatusOr<v1::Job> ScheduleManager::Submit(const v1::Schedule& s, absl::Time nominal,
                                                bool manual) {
  v1::SubmitRequest request = SubmitOf(s.job());
  (*request.mutable_labels())["jobstream/schedule"] = s.id();
  (*request.mutable_labels())["jobstream/fire-time"] = FireTimeText(nominal);
  if (manual) {
    (*request.mutable_labels())["jobstream/trigger"] = "manual";
  } else {
    // One job per schedule and fire time, whoever fires it and however often; the
    // creation time tells a schedule from an earlier one of the same id.
    request.set_request_id(absl::StrCat("schedule/", s.id(), "/",
                                        absl::ToUnixMillis(v1::ToTime(s.create_time())), "/",
                                        absl::ToUnixSeconds(nominal)));
  }
  absl::Notification done;
  absl::StatusOr<v1::Job> result;
  jobs_->Submit(request, auth::Scope::Tenant(s.tenant()), [&](absl::StatusOr<v1::Job> job) {
    result = std::move(job);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

absl::StatusOr<v1::Job> ScheduleManager::Trigger(const std::string& id,
                                                 const auth::Scope& scope) {
  absl::StatusOr<StoredSchedule> s = Find(id, scope);
  if (!s.ok()) return s.status();
  absl::StatusOr<v1::Job> job = Submit(s->schedule, absl::Now(), /*manual=*/true);
  if (!job.ok()) return job.status();
  // The overlap policy counts it as the previous job from now on.
  absl::StatusOr<StoredSchedule> changed = Change(id, scope, [&](StoredSchedule& s) {
    s.schedule.set_last_job_id(job->id());
    return absl::OkStatus();
  });
  if (!changed.ok()) return changed.status();
  return job;
}

std::optional<v1::Job::State> ScheduleManager::LastJobState(const v1::Schedule& s) const {
  if (s.last_job_id().empty()) return std::nullopt;
  absl::StatusOr<v1::Job> job = reader_->GetJob(s.last_job_id());
  if (!job.ok()) return std::nullopt;
  return job->state();
}

void ScheduleManager::Fire(StoredSchedule s, absl::Time now) {
  // Fires a write decided before (this server's or one cut off by a crash) go out before
  // anything is planned again: planning again would count them as skipped, though their
  // jobs may exist.
  if (s.state.submitting.empty() && !Plan(s, now)) return;
  SubmitDecided(std::move(s), now);
}

bool ScheduleManager::Plan(StoredSchedule& s, absl::Time now) {
  for (int tries = 0;; ++tries) {
    if (s.schedule.paused()) return false;
    absl::StatusOr<Timetable> table = StoredTimetable(s.schedule);
    if (!table.ok()) return false;  // checked when it was set
    const std::optional<v1::Job::State> previous = LastJobState(s.schedule);
    const FirePlan plan =
        PlanFires(s.schedule, *table, s.state, now, previous && !v1::IsFinished(*previous));
    StoredSchedule planned = s;
    planned.schedule.set_skipped_count(planned.schedule.skipped_count() + plan.skipped);
    planned.state = plan.state;
    planned.state.submitting = plan.submit;
    planned.wake = plan.submit.empty() ? plan.wake : now;
    const absl::Status written = store_->Update(planned);
    if (written.ok()) {
      s = std::move(planned);
      return !s.state.submitting.empty();
    }
    // Changed meanwhile (paused, updated, fired by a leader before us): plan again on the
    // schedule as it now stands.
    absl::StatusOr<StoredSchedule> fresh =
        absl::IsAborted(written) && tries < 10
            ? store_->Get(s.schedule.tenant(), s.schedule.id())
            : absl::StatusOr<StoredSchedule>(written);
    if (!fresh.ok()) {
      LogWriteError(s, fresh.status());
      return false;
    }
    s = std::move(*fresh);
    if (!s.state.submitting.empty()) return true;
  }
}

void ScheduleManager::SubmitDecided(StoredSchedule s, absl::Time now) {
  int64_t fired = 0, skipped = 0;
  std::string last_job_id, last_error;
  absl::Time last_fire;
  std::vector<absl::Time> left;
  for (size_t i = 0; i < s.state.submitting.size(); ++i) {
    const absl::Time nominal = s.state.submitting[i];
    absl::StatusOr<v1::Job> job = Submit(s.schedule, nominal, /*manual=*/false);
    if (job.ok()) {
      ++fired;
      last_job_id = job->id();
      last_fire = nominal;
      continue;
    }
    last_error = absl::StrCat("the fire at ", FireTimeText(nominal),
                              " could not submit its job: ", job.status().ToString());
    if (!RetryableSubmitError(job.status())) {
      ++skipped;
      continue;
    }
    // Tried again soon, from this fire on; what came before it stands.
    left.assign(s.state.submitting.begin() + i, s.state.submitting.end());
    break;
  }
  // What the fires did, recorded on the schedule as it stands when written: changed
  // meanwhile (paused, updated), it keeps its own timetable and paused state.
  auto record = [&](StoredSchedule& into) {
    v1::Schedule& schedule = into.schedule;
    schedule.set_skipped_count(schedule.skipped_count() + skipped);
    schedule.set_fired_count(schedule.fired_count() + fired);
    if (fired > 0) {
      schedule.set_last_job_id(last_job_id);
      *schedule.mutable_last_fire_time() = v1::ToProto(last_fire);
    }
    schedule.set_last_error(last_error);
    into.state.submitting = left;
    into.wake = left.empty() ? StoredWake(schedule, into.state, now) : now + kRetryFire;
  };
  record(s);
  absl::Status written = store_->Update(s);
  for (int tries = 0; absl::IsAborted(written) && tries < 10; ++tries) {
    absl::StatusOr<StoredSchedule> fresh = store_->Get(s.schedule.tenant(), s.schedule.id());
    if (!fresh.ok()) {
      written = fresh.status();
      break;
    }
    record(*fresh);
    written = store_->Update(*fresh);
  }
  LogWriteError(s, written);
}

bool ScheduleManager::FireDue(absl::Time now) {
  absl::StatusOr<std::vector<StoredSchedule>> due = store_->Due(now, kDuePerTurn);
  if (!due.ok()) {
    std::cerr << "jobstream-server: reading due schedules: " << due.status() << "\n";
    return false;
  }
  if (due->empty()) return false;
  if (fire_pool_ == nullptr) fire_pool_ = std::make_unique<util::TaskPool>("schedule-fire", 64);
  absl::BlockingCounter fired(static_cast<int>(due->size()));
  for (StoredSchedule& s : *due) {
    fire_pool_->Post([this, &fired, s = std::move(s), now]() mutable {
      Fire(std::move(s), now);
      fired.DecrementCount();
    });
  }
  fired.Wait();
  return static_cast<int>(due->size()) == kDuePerTurn;
}

}  // namespace jobstream::schedules
