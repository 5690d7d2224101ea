#include "gateway/http_mapping.h"

#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::gateway {
namespace {

TEST(SseTest, FramesIdEventAndOneDataLinePerLine) {
  EXPECT_EQ(SseEvent("7", "progress", R"({"a":1})"),
            "id: 7\nevent: progress\ndata: {\"a\":1}\n\n");
  EXPECT_EQ(SseEvent("", "", "one\ntwo\r\nthree\rfour"),
            "data: one\ndata: two\ndata: three\ndata: four\n\n");
  EXPECT_EQ(SseEvent("1", "", ""), "id: 1\ndata: \n\n");
  EXPECT_EQ(SseEvent("", "x", "trailing\n"), "event: x\ndata: trailing\ndata: \n\n");
  EXPECT_EQ(SseComment("keepalive"), ": keepalive\n\n");
  EXPECT_EQ(SseRetry(2000), "retry: 2000\n\n");
}

TEST(ResumeAfterTest, PrefersLastEventIdAndRejectsGarbage) {
  EXPECT_EQ(*ResumeAfter("12", "3").value(), 12);
  EXPECT_EQ(*ResumeAfter(std::nullopt, "3").value(), 3);
  EXPECT_EQ(*ResumeAfter("01m81rd5kq5g91qm659eqts4bn:42", std::nullopt).value(), 42);
  EXPECT_FALSE(ResumeAfter(std::nullopt, std::nullopt).value().has_value());
  for (const char* bad : {"-1", "abc", "", "1.5", "+3", " 3", "99999999999999999999"}) {
    auto parsed = ResumeAfter(bad, std::nullopt);
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << bad;
    parsed = ResumeAfter(std::nullopt, bad);
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << bad;
  }
  EXPECT_NE(ResumeAfter(std::nullopt, "x").status().message().find("after must be"),
            std::string::npos);
}

TEST(StatusMapTest, FollowsGoogleApiGuidelines) {
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::OK), 200);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::INVALID_ARGUMENT), 400);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::OUT_OF_RANGE), 400);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::NOT_FOUND), 404);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::FAILED_PRECONDITION), 409);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::RESOURCE_EXHAUSTED), 429);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::UNAVAILABLE), 503);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::UNAUTHENTICATED), 401);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::PERMISSION_DENIED), 403);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::DEADLINE_EXCEEDED), 504);
  EXPECT_EQ(HttpStatusFor(grpc::StatusCode::UNIMPLEMENTED), 501);
}

TEST(JsonTest, ErrorsAreGoogleRpcStatusShapedAndEscaped) {
  EXPECT_EQ(ErrorJson(grpc::StatusCode::NOT_FOUND, "no job \"x\"\n"),
            R"({"code":5,"message":"no job \"x\"\n","status":"NOT_FOUND"})");
}

TEST(JsonTest, Proto3JsonBothWaysAndUnknownFieldsRefused) {
  v1::SubmitRequest request;
  ASSERT_TRUE(FromJson(R"({"type":"demo.steps","requestId":"r1","params":{"steps":["a"]},
                          "labels":{"team":"red"},"maxAttempts":2})", &request).ok());
  EXPECT_EQ(request.type(), "demo.steps");
  EXPECT_EQ(request.request_id(), "r1");
  EXPECT_EQ(request.max_attempts(), 2);
  EXPECT_EQ(request.labels().at("team"), "red");
  EXPECT_EQ(ToJson(request).find("\"requestId\":\"r1\"") != std::string::npos, true);
  v1::SubmitRequest again;
  ASSERT_TRUE(FromJson(ToJson(request), &again).ok());
  EXPECT_EQ(again.SerializeAsString(), request.SerializeAsString());
  absl::Status typo = FromJson(R"({"tyep":"demo.steps"})", &again);
  EXPECT_TRUE(absl::IsInvalidArgument(typo));
  EXPECT_NE(typo.message().find("SubmitRequest"), std::string::npos) << typo;
  EXPECT_FALSE(FromJson("{\"type\":\"\xff\xfe\"}", &again).ok()) << "invalid UTF-8";
  EXPECT_FALSE(FromJson("", &again).ok());
  EXPECT_FALSE(FromJson("[1,2]", &again).ok());
}

TEST(RangeTest, OneRangeOfBytesIsServedAnythingElseGetsTheWhole) {
  auto is = [](RangeRequest r, RangeRequest::Kind kind, int64_t first = 0, int64_t last = 0) {
    return r.kind == kind && (kind != RangeRequest::kPartial || (r.first == first && r.last == last));
  };
  EXPECT_TRUE(is(ParseRange(std::nullopt, 100), RangeRequest::kWhole));
  EXPECT_TRUE(is(ParseRange("bytes=0-9", 100), RangeRequest::kPartial, 0, 9));
  EXPECT_TRUE(is(ParseRange("bytes=40-59", 100), RangeRequest::kPartial, 40, 59));
  EXPECT_TRUE(is(ParseRange("bytes=90-", 100), RangeRequest::kPartial, 90, 99));
  EXPECT_TRUE(is(ParseRange("bytes=90-1000", 100), RangeRequest::kPartial, 90, 99));
  EXPECT_TRUE(is(ParseRange("bytes=-10", 100), RangeRequest::kPartial, 90, 99));
  EXPECT_TRUE(is(ParseRange("bytes=-1000", 100), RangeRequest::kPartial, 0, 99));
  EXPECT_TRUE(is(ParseRange("bytes=100-", 100), RangeRequest::kUnsatisfiable));
  EXPECT_TRUE(is(ParseRange("bytes=-0", 100), RangeRequest::kUnsatisfiable));
  EXPECT_TRUE(is(ParseRange("bytes=0-", 0), RangeRequest::kUnsatisfiable));
  // Malformed, several ranges, other units: ignored.
  for (const char* h : {"bytes=9-1", "bytes=a-b", "bytes=0-1,5-9", "items=0-1", "bytes=",
                        "bytes=-", "bytes=+1-2", "bytes=1-2-3", "bytes=99999999999999999999-"}) {
    EXPECT_TRUE(is(ParseRange(h, 100), RangeRequest::kWhole)) << h;
  }
}

TEST(EtagTest, StrongAndWeakFormsAndStar) {
  const std::string etag = "\"abc\"";
  EXPECT_TRUE(EtagMatches("\"abc\"", etag));
  EXPECT_TRUE(EtagMatches("W/\"abc\"", etag));
  EXPECT_TRUE(EtagMatches("\"x\", \"abc\"", etag));
  EXPECT_TRUE(EtagMatches("*", etag));
  EXPECT_FALSE(EtagMatches("\"abcd\"", etag));
  EXPECT_FALSE(EtagMatches("abc", etag));
  EXPECT_FALSE(EtagMatches("", etag));
}

TEST(ContentDispositionTest, AsciiFallbackAndExactUtf8Name) {
  EXPECT_EQ(ContentDisposition(false, "plot.png"),
            "inline; filename=\"plot.png\"; filename*=UTF-8''plot.png");
  EXPECT_EQ(ContentDisposition(true, "r\xc3\xa9sum\xc3\xa9 \"1\".pdf"),
            "attachment; filename=\"r__sum__ _1_.pdf\"; "
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf");
  EXPECT_EQ(ArtifactPath("j1", "a b/c?.txt"), "/v1/jobs/j1/artifacts/a%20b%2Fc%3F.txt");
}

TEST(RetryAfterTest, FromTheProgressRateWithinOneToThirtySeconds) {
  const absl::Time now = absl::FromUnixSeconds(1000000);
  v1::Job job;
  job.set_state(v1::Job::RUNNING);
  *job.mutable_start_time() = v1::ToProto(now - absl::Seconds(10));
  job.mutable_progress()->set_fraction(0.5);
  EXPECT_EQ(RetryAfterSeconds(job, now), 10);  // half done in 10 s: 10 s to go
  job.mutable_progress()->set_fraction(0.99);
  EXPECT_EQ(RetryAfterSeconds(job, now), 1);  // never below 1
  job.mutable_progress()->set_fraction(0.01);
  EXPECT_EQ(RetryAfterSeconds(job, now), 30);  // never above 30
  job.mutable_progress()->set_fraction(0);
  EXPECT_EQ(RetryAfterSeconds(job, now), 1);  // no rate yet
  job.set_state(v1::Job::QUEUED);
  *job.mutable_run_at() = v1::ToProto(now + absl::Seconds(7));
  EXPECT_EQ(RetryAfterSeconds(job, now), 7);
  *job.mutable_next_attempt_time() = v1::ToProto(now + absl::Milliseconds(2500));
  EXPECT_EQ(RetryAfterSeconds(job, now), 3);
}

}  // namespace
}  // namespace jobstream::gateway

namespace jobstream::gateway {
namespace {

TEST(CredentialTest, TheHeaderWinsThenTheSessionCookie) {
  EXPECT_EQ(RequestCredential("Bearer abc", "jobstream_token=xyz").authorization, "Bearer abc");
  const Credential cookie = RequestCredential(std::nullopt, "a=1; jobstream_token=xyz; b=2");
  EXPECT_EQ(cookie.authorization, "Bearer xyz");
  EXPECT_TRUE(cookie.from_cookie);
  EXPECT_EQ(RequestCredential(std::nullopt, "jobstream_token=\"q\"").authorization, "Bearer q");
  EXPECT_EQ(RequestCredential(std::nullopt, "jobstream_tokenx=1; x=jobstream_token").authorization,
            "");
  EXPECT_EQ(RequestCredential(std::nullopt, "jobstream_token=").authorization, "");
  EXPECT_EQ(RequestCredential(std::nullopt, std::nullopt).authorization, "");
}

TEST(CredentialTest, OnlyCookieSafeTokensAreKeptAndTheCookieSaysHowToKeepThem) {
  EXPECT_TRUE(IsCookieToken("abc-DEF_0.9~+/="));
  EXPECT_FALSE(IsCookieToken(""));
  EXPECT_FALSE(IsCookieToken("a b"));
  EXPECT_FALSE(IsCookieToken("a;b"));
  EXPECT_FALSE(IsCookieToken("a\"b"));
  EXPECT_FALSE(IsCookieToken(std::string(2049, 'a')));
  EXPECT_EQ(SessionCookie("t", absl::Hours(1), false),
            "jobstream_token=t; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict");
  EXPECT_EQ(SessionCookie("", absl::ZeroDuration(), true),
            "jobstream_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure");
}

}  // namespace
}  // namespace jobstream::gateway
