#include "gateway/routes.h"

#include "gtest/gtest.h"

namespace jobstream::gateway {
namespace {

Route Ok(absl::string_view method, absl::string_view target) {
  auto parsed = ParseRoute(method, target);
  EXPECT_TRUE(std::holds_alternative<Route>(parsed)) << method << " " << target;
  return std::holds_alternative<Route>(parsed) ? std::get<Route>(parsed) : Route{};
}

RouteError Err(absl::string_view method, absl::string_view target) {
  auto parsed = ParseRoute(method, target);
  EXPECT_TRUE(std::holds_alternative<RouteError>(parsed)) << method << " " << target;
  return std::holds_alternative<RouteError>(parsed) ? std::get<RouteError>(parsed) : RouteError{};
}

TEST(RoutesTest, EveryRouteOfTheTable) {
  EXPECT_EQ(Ok("POST", "/v1/jobs").kind, RouteKind::kSubmit);
  EXPECT_EQ(Ok("GET", "/v1/jobs").kind, RouteKind::kListJobs);
  Route get = Ok("GET", "/v1/jobs/01m81rd5kq5g91qm659eqts4bn");
  EXPECT_EQ(get.kind, RouteKind::kGetJob);
  EXPECT_EQ(get.job_id, "01m81rd5kq5g91qm659eqts4bn");
  EXPECT_EQ(Ok("DELETE", "/v1/jobs/abc").kind, RouteKind::kDeleteJob);
  Route cancel = Ok("POST", "/v1/jobs/abc:cancel");
  EXPECT_EQ(cancel.kind, RouteKind::kCancelJob);
  EXPECT_EQ(cancel.job_id, "abc");
  Route retry = Ok("POST", "/v1/jobs/abc:retry");
  EXPECT_EQ(retry.kind, RouteKind::kRetryJob);
  EXPECT_EQ(retry.job_id, "abc");
  EXPECT_EQ(Ok("POST", "/v1/jobs:bulkCancel").kind, RouteKind::kBulkCancel);
  EXPECT_EQ(Ok("POST", "/v1/jobs:bulkRetry").kind, RouteKind::kBulkRetry);
  EXPECT_EQ(Ok("POST", "/v1/jobs:bulkDelete").kind, RouteKind::kBulkDelete);
  EXPECT_EQ(Ok("POST", "/v1/jobs:batch").kind, RouteKind::kSubmitBatch);
  Route events = Ok("GET", "/v1/jobs/abc/events?after=5");
  EXPECT_EQ(events.kind, RouteKind::kJobEvents);
  EXPECT_EQ(events.Param("after").value_or(""), "5");
  EXPECT_EQ(Ok("GET", "/v1/events?type=demo.steps").kind, RouteKind::kAllEvents);
  EXPECT_EQ(Ok("GET", "/v1/types").kind, RouteKind::kListTypes);
  EXPECT_EQ(Ok("GET", "/v1/stats").kind, RouteKind::kJobStats);
  EXPECT_EQ(Ok("GET", "/healthz").kind, RouteKind::kHealth);
  EXPECT_EQ(Ok("GET", "/metrics").kind, RouteKind::kMetrics);
  Route wait = Ok("GET", "/v1/jobs/abc:wait?timeout=5s");
  EXPECT_EQ(wait.kind, RouteKind::kWaitJob);
  EXPECT_EQ(wait.job_id, "abc");
  EXPECT_EQ(Ok("GET", "/v1/jobs/abc/result").kind, RouteKind::kJobResult);
  Route artifact = Ok("GET", "/v1/jobs/abc/artifacts/r%C3%A9sum%C3%A9%20final.pdf");
  EXPECT_EQ(artifact.kind, RouteKind::kArtifact);
  EXPECT_EQ(artifact.artifact, "r\xc3\xa9sum\xc3\xa9 final.pdf");
  EXPECT_FALSE(artifact.head);
  EXPECT_TRUE(Ok("HEAD", "/v1/jobs/abc/artifacts/x").head);
  // An encoded slash stays inside the one segment (and the server refuses the name).
  EXPECT_EQ(Ok("GET", "/v1/jobs/abc/artifacts/a%2Fb").artifact, "a/b");
  EXPECT_EQ(Err("POST", "/v1/jobs/abc/artifacts/x").allow, "GET, HEAD");
  EXPECT_EQ(Err("POST", "/v1/jobs/abc:wait").allow, "GET");
  EXPECT_EQ(Err("GET", "/v1/jobs/:wait").http_status, 404);
  EXPECT_EQ(Err("GET", "/v1/jobs/abc/artifacts/").http_status, 404);
}

TEST(RoutesTest, QueryIsDecodedAndRepeatable) {
  Route list = Ok("GET", "/v1/jobs?state=RUNNING&state=QUEUED&type=demo%2Esteps&pageToken=a%2Bb%3D");
  EXPECT_EQ(list.Params("state"), (std::vector<std::string>{"RUNNING", "QUEUED"}));
  EXPECT_EQ(list.Param("type").value_or(""), "demo.steps");
  EXPECT_EQ(list.Param("pageToken").value_or(""), "a+b=");
  EXPECT_FALSE(list.Param("missing").has_value());
}

TEST(RoutesTest, AQueryParameterARouteDoesNotTakeIsA400NamingTheOnesItDoes) {
  RouteError bogus = Err("GET", "/v1/jobs?bogus=1");
  EXPECT_EQ(bogus.http_status, 400);
  EXPECT_EQ(bogus.message,
            "unknown query parameter \"bogus\": GET /v1/jobs takes state, type, label, pageSize, "
            "pageToken, createdAfter, createdBefore");
  // A near miss is refused rather than ignored (it would list every job).
  EXPECT_EQ(Err("GET", "/v1/jobs?states=FAILED").http_status, 400);
  EXPECT_EQ(Err("GET", "/v1/jobs/abc?after=1").message,
            "unknown query parameter \"after\": GET /v1/jobs/abc takes none");
  EXPECT_EQ(Err("POST", "/v1/jobs?x").http_status, 400) << "a name with no value too";
  EXPECT_EQ(Err("GET", "/v1/jobs/abc/events?after=1&limit=5").http_status, 400);
  EXPECT_EQ(Err("GET", "/v1/events?job=abc").message,
            "unknown query parameter \"job\": GET /v1/events takes type, label, state");
  EXPECT_EQ(Err("GET", "/healthz?verbose").http_status, 400);
  // The name is quoted escaped and cut short, whatever it holds.
  EXPECT_EQ(Err("GET", "/v1/types?%0A%22" + std::string(100, 'n') + "=1").message,
            "unknown query parameter \"\\n\\\"" + std::string(38, 'n') +
                "\": GET /v1/types takes none");
  // What each route takes is accepted.
  EXPECT_EQ(Ok("GET", "/v1/jobs?state=FAILED&type=t&label=a:b&pageSize=5&pageToken=x").kind,
            RouteKind::kListJobs);
  EXPECT_EQ(Ok("GET", "/v1/events?state=FAILED&type=t&label=a:b").kind, RouteKind::kAllEvents);
  EXPECT_EQ(Ok("GET", "/v1/ws?state=RUNNING").kind, RouteKind::kAllWs);
  EXPECT_EQ(Ok("GET", "/v1/jobs/abc/ws?after=3").kind, RouteKind::kJobWs);
  EXPECT_EQ(Ok("GET", "/v1/jobs/abc:wait?timeout=5s").kind, RouteKind::kWaitJob);
  EXPECT_EQ(Ok("HEAD", "/v1/jobs/abc/artifacts/x?download=1").kind, RouteKind::kArtifact);
  EXPECT_EQ(Ok("GET", "/v1/jobs/abc/artifacts/x?v=0123abcd").kind, RouteKind::kArtifact);
  EXPECT_EQ(Ok("GET", "/v1/schedules?pageSize=5&pageToken=x").kind, RouteKind::kListSchedules);
  // The page is the page, whatever query a link to it carries.
  EXPECT_EQ(Ok("GET", "/?utm_source=mail").kind, RouteKind::kAsset);
  EXPECT_EQ(Ok("GET", "/static/app.js?v=2").kind, RouteKind::kAsset);
}

TEST(RoutesTest, TheFilterOfAQueryIsParsedOrRefusedPrecisely) {
  auto filter = QueryWatchFilter(
      Ok("GET", "/v1/events?type=a&type=b&label=team:x&label=env:prod&state=failed,CANCELLED"
                "&state=Running"));
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(filter->types_size(), 2);
  EXPECT_EQ(filter->labels().at("team"), "x");
  EXPECT_EQ(filter->labels().at("env"), "prod");
  EXPECT_EQ(std::vector<int>(filter->states().begin(), filter->states().end()),
            (std::vector<int>{v1::Job::FAILED, v1::Job::CANCELLED, v1::Job::RUNNING}));
  auto bad_state = QueryWatchFilter(Ok("GET", "/v1/events?state=DONE"));
  EXPECT_TRUE(absl::IsInvalidArgument(bad_state.status()));
  EXPECT_EQ(bad_state.status().message(),
            "state \"DONE\" is not one of WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED");
  EXPECT_FALSE(QueryStates(Ok("GET", "/v1/jobs?state=STATE_UNSPECIFIED")).ok());
  EXPECT_TRUE(QueryStates(Ok("GET", "/v1/jobs?state=,,")).ok()) << "empty names are skipped";
  EXPECT_EQ(QueryLabels(Ok("GET", "/v1/jobs?label=nocolon")).status().message(),
            "label takes key:value");
  EXPECT_EQ(QueryLabels(Ok("GET", "/v1/jobs?label=k:v:w"))->at("k"), "v:w");
}

TEST(RoutesTest, WrongMethodsGet405WithAllow) {
  RouteError e = Err("PUT", "/v1/jobs");
  EXPECT_EQ(e.http_status, 405);
  EXPECT_EQ(e.allow, "GET, POST");
  EXPECT_EQ(Err("POST", "/v1/jobs/abc").allow, "GET, DELETE");
  EXPECT_EQ(Err("GET", "/v1/jobs/abc:cancel").allow, "POST");
  EXPECT_EQ(Err("GET", "/v1/jobs/abc:retry").allow, "POST");
  EXPECT_EQ(Err("GET", "/v1/jobs:bulkRetry").allow, "POST");
  EXPECT_EQ(Err("POST", "/v1/jobs:bulkNothing").http_status, 404);
  EXPECT_EQ(Err("BREW", "/healthz").http_status, 405);
  EXPECT_EQ(Err("POST", "/v1/types").allow, "GET");
}

TEST(RoutesTest, HostileTargetsAreRefusedOrHarmless) {
  EXPECT_EQ(Err("GET", "/nope").http_status, 404);
  EXPECT_EQ(Err("GET", "/v1/jobs/").http_status, 404);
  EXPECT_EQ(Err("GET", "/v1/jobs/a/b/c").http_status, 404);
  EXPECT_EQ(Err("POST", "/v1/jobs/:cancel").http_status, 404);
  EXPECT_EQ(Err("POST", "/v1/jobs/:retry").http_status, 404);
  EXPECT_EQ(Err("GET", "http://evil.example/v1/jobs").http_status, 400) << "absolute form";
  EXPECT_EQ(Err("GET", "v1/jobs").http_status, 400);
  EXPECT_EQ(Err("GET", "/v1/jobs/%zz").http_status, 400) << "bad percent-encoding";
  EXPECT_EQ(Err("GET", std::string("/v1/jobs\0x", 10)).http_status, 400);
  // An encoded slash stays inside the id (the server then refuses the id): never a path.
  Route slash = Ok("GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd");
  EXPECT_EQ(slash.kind, RouteKind::kGetJob);
  EXPECT_EQ(slash.job_id, "../../etc/passwd");
  EXPECT_EQ(Ok("GET", "/v1/jobs/" + std::string(10000, 'a')).job_id.size(), 10000u);
}

}  // namespace
}  // namespace jobstream::gateway

namespace jobstream::gateway {
namespace {

TEST(RoutesTest, ScheduleRoutes) {
  EXPECT_EQ(Ok("GET", "/v1/schedules?pageSize=5").kind, RouteKind::kListSchedules);
  EXPECT_EQ(Ok("POST", "/v1/schedules").kind, RouteKind::kCreateSchedule);
  Route get = Ok("GET", "/v1/schedules/nightly-report");
  EXPECT_EQ(get.kind, RouteKind::kGetSchedule);
  EXPECT_EQ(get.schedule_id, "nightly-report");
  EXPECT_EQ(Ok("PUT", "/v1/schedules/a").kind, RouteKind::kUpdateSchedule);
  EXPECT_EQ(Ok("DELETE", "/v1/schedules/a").kind, RouteKind::kDeleteSchedule);
  Route pause = Ok("POST", "/v1/schedules/a.b:pause");
  EXPECT_EQ(pause.kind, RouteKind::kPauseSchedule);
  EXPECT_EQ(pause.schedule_id, "a.b");
  EXPECT_EQ(Ok("POST", "/v1/schedules/a:resume").kind, RouteKind::kResumeSchedule);
  EXPECT_EQ(Ok("POST", "/v1/schedules/a:trigger").kind, RouteKind::kTriggerSchedule);
  EXPECT_EQ(Err("PATCH", "/v1/schedules").allow, "GET, POST");
  EXPECT_EQ(Err("POST", "/v1/schedules/a").allow, "GET, PUT, DELETE");
  EXPECT_EQ(Err("GET", "/v1/schedules/a:pause").allow, "POST");
  EXPECT_EQ(Err("POST", "/v1/schedules/:trigger").http_status, 404);
  EXPECT_EQ(Err("GET", "/v1/schedules/a/b").http_status, 404);
}

TEST(RoutesTest, ATypeIsPausedAndResumedByPost) {
  Route pause = Ok("POST", "/v1/types/mail.send:pause");
  EXPECT_EQ(pause.kind, RouteKind::kPauseType);
  EXPECT_EQ(pause.type, "mail.send");
  Route resume = Ok("POST", "/v1/types/a%20b:resume");
  EXPECT_EQ(resume.kind, RouteKind::kResumeType);
  EXPECT_EQ(resume.type, "a b") << "percent-decoded; the server checks the name";
  EXPECT_EQ(Err("GET", "/v1/types/mail:pause").allow, "POST");
  EXPECT_EQ(Err("POST", "/v1/types/:pause").http_status, 404);
  EXPECT_EQ(Err("POST", "/v1/types/mail").http_status, 404);
  EXPECT_EQ(Err("POST", "/v1/types/mail:pause?reason=x").http_status, 400)
      << "the reason goes in the body";
}

}  // namespace
}  // namespace jobstream::gateway
