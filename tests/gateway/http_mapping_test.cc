#include "gateway/http_mapping.h"

#include "gtest/gtest.h"
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
  EXPECT_EQ(HttpStatusFor(static_cast<grpc::StatusCode>(99)), 500);
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

}  // namespace
}  // namespace jobstream::gateway
