// BulkRetry, BulkCancel and BulkDelete on the real binary and each store: a filter's jobs
// change in pages with each one's event and action, a dry run and a limit count right,
// a second call changes only what has come to match, the changes outlive a kill -9, and
// bad filters are refused, changing nothing.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/job_helpers.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using testing::ServerProcess;
using v1::Job;
using v1::JobEvent;

class BulkTest : public testing::StoreTest {
 protected:
  std::unique_ptr<ServerProcess> Start(const std::string& listen = "") {
    std::vector<std::string> flags = StoreFlags();
    if (!listen.empty()) flags.push_back("--listen=" + listen);
    return std::make_unique<ServerProcess>(dir_.sub("data"), flags);
  }
  enum Op { kCancel, kRetry, kDelete };
  static grpc::Status Bulk(ServerProcess& s, Op op, const v1::BulkRequest& request,
                           v1::BulkResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stub = v1::JobService::NewStub(s.Channel());
    switch (op) {
      case kCancel: return stub->BulkCancel(&ctx, request, response);
      case kRetry: return stub->BulkRetry(&ctx, request, response);
      case kDelete: return stub->BulkDelete(&ctx, request, response);
    }
    return grpc::Status::CANCELLED;
  }
  static v1::BulkRequest Labelled(const std::string& group, const std::string& reason = "") {
    v1::BulkRequest r;
    (*r.mutable_filter()->mutable_labels())["group"] = group;
    r.set_reason(reason);
    return r;
  }
  // `n` jobs labelled group=`group` that fail at once, ended.
  static std::vector<std::string> Failed(ServerProcess& s, const std::string& group, int n) {
    client::JobClient client(s.Channel());
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      v1::SubmitRequest r = testing::SubmitRequestOf(
          "demo.steps", R"({"steps": ["a"], "step_ms": 0, "ticks": 0, "fail_at": "a"})");
      r.set_max_attempts(1);
      (*r.mutable_labels())["group"] = group;
      auto job = client.Submit(r);
      EXPECT_TRUE(job.ok()) << job.status();
      if (job.ok()) ids.push_back(job->id());
    }
    for (const std::string& id : ids) {
      auto ended = client.Watch(id, 0, [](const JobEvent&) {});
      EXPECT_TRUE(ended.ok() && ended->state() == Job::FAILED) << id;
    }
    return ids;
  }
  static int Count(ServerProcess& s, Job::State state, const std::string& group) {
    v1::ListJobsRequest r;
    r.add_states(state);
    (*r.mutable_labels())["group"] = group;
    r.set_page_size(1000);
    auto listed = client::JobClient(s.Channel()).List(r);
    EXPECT_TRUE(listed.ok()) << listed.status();
    return listed.ok() ? listed->jobs_size() : -1;
  }
  static void PauseDemo(ServerProcess& s) {
    grpc::ClientContext ctx;
    v1::PauseTypeRequest r;
    r.set_type("demo.steps");
    v1::JobTypeInfo info;
    ASSERT_TRUE(v1::JobService::NewStub(s.Channel())->PauseType(&ctx, r, &info).ok());
  }

  testing::TempDir dir_;
};
JOBSTREAM_BOTH_STORES(BulkTest);

TEST_P(BulkTest, RetryCancelAndDeleteAFiltersJobsCountingWhatTheyChanged) {
  auto server = Start();
  const std::vector<std::string> a = Failed(*server, "a", 30);
  Failed(*server, "b", 5);
  // Retried jobs stay queued while their type is paused, so the counts below hold still.
  PauseDemo(*server);

  v1::BulkResponse counts;
  v1::BulkRequest dry = Labelled("a");
  dry.set_dry_run(true);
  ASSERT_TRUE(Bulk(*server, kRetry, dry, &counts).ok());
  EXPECT_EQ(counts.matched(), 30);
  EXPECT_EQ(counts.changed(), 30);
  EXPECT_EQ(Count(*server, Job::FAILED, "a"), 30) << "a dry run changes nothing";

  v1::BulkRequest some = Labelled("a", "the upstream is fixed");
  some.set_limit(12);
  ASSERT_TRUE(Bulk(*server, kRetry, some, &counts).ok());
  EXPECT_EQ(counts.changed(), 12);
  EXPECT_EQ(Count(*server, Job::QUEUED, "a"), 12);
  ASSERT_TRUE(Bulk(*server, kRetry, Labelled("a", "the upstream is fixed"), &counts).ok());
  EXPECT_EQ(counts.changed(), 18) << "what the first call left";
  ASSERT_TRUE(Bulk(*server, kRetry, Labelled("a"), &counts).ok());
  EXPECT_EQ(counts.changed(), 0) << "idempotent: nothing failed is left";
  EXPECT_EQ(Count(*server, Job::FAILED, "b"), 5) << "another label's jobs are not touched";

  // Each retried job has its RETRIED event with the call's reason.
  {
    auto job = client::JobClient(server->Channel()).GetStatus(a[7]);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->state(), Job::QUEUED);
    EXPECT_EQ(job->series(), 2);
    EXPECT_EQ(job->last_action().action(), "retry");
    EXPECT_EQ(job->last_action().reason(), "the upstream is fixed");
  }

  // Durable: a kill -9 keeps them queued and retried.
  const std::string address = server->address();
  server.reset();  // SIGKILL
  server = Start(address);
  client::JobClient client(server->Channel());
  EXPECT_EQ(Count(*server, Job::QUEUED, "a"), 30);

  // Cancel them; delete what ended; a state an operation does not take is skipped.
  ASSERT_TRUE(Bulk(*server, kCancel, Labelled("a", "not needed after all"), &counts).ok());
  EXPECT_EQ(counts.changed(), 30);
  EXPECT_EQ(Count(*server, Job::CANCELLED, "a"), 30);
  testing::Stream events = testing::WatchOnce(server->Channel(), a[0], 0);
  ASSERT_FALSE(events.events.empty());
  EXPECT_EQ(events.events.back().type(), JobEvent::CANCELLED);
  EXPECT_EQ(events.events.back().action().reason(), "not needed after all");
  v1::BulkRequest queued_too = Labelled("b");
  queued_too.mutable_filter()->add_states(Job::FAILED);
  queued_too.mutable_filter()->add_states(Job::QUEUED);
  ASSERT_TRUE(Bulk(*server, kCancel, queued_too, &counts).ok());
  EXPECT_EQ(counts.matched(), 5);
  EXPECT_EQ(counts.skipped(), 5) << "a FAILED job cannot be cancelled";
  EXPECT_EQ(counts.changed(), 0);
  ASSERT_TRUE(Bulk(*server, kDelete, Labelled("a"), &counts).ok());
  EXPECT_EQ(counts.changed(), 30);
  EXPECT_FALSE(client.GetStatus(a[3]).ok()) << "deleted";
  EXPECT_EQ(Count(*server, Job::FAILED, "b"), 5);
}

TEST_P(BulkTest, CreationTimesBoundTheJobsTaken) {
  auto server = Start();
  const std::vector<std::string> early = Failed(*server, "t", 4);
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time cut = absl::Now();
  absl::SleepFor(absl::Milliseconds(50));
  Failed(*server, "t", 3);
  PauseDemo(*server);
  v1::BulkRequest before = Labelled("t");
  *before.mutable_filter()->mutable_created_before() = v1::ToProto(cut);
  before.set_dry_run(true);
  v1::BulkResponse counts;
  ASSERT_TRUE(Bulk(*server, kRetry, before, &counts).ok());
  EXPECT_EQ(counts.changed(), 4);
  v1::BulkRequest after = Labelled("t");
  *after.mutable_filter()->mutable_created_after() = v1::ToProto(cut);
  ASSERT_TRUE(Bulk(*server, kRetry, after, &counts).ok());
  EXPECT_EQ(counts.changed(), 3);
  EXPECT_EQ(Count(*server, Job::FAILED, "t"), 4) << "the early ones are as they were";
  // ListJobs takes the same range, paging within it.
  v1::ListJobsRequest list;
  (*list.mutable_labels())["group"] = "t";
  *list.mutable_created_before() = v1::ToProto(cut);
  list.set_page_size(3);
  client::JobClient client(server->Channel());
  auto first = client.List(list);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->jobs_size(), 3);
  EXPECT_EQ(first->jobs(0).id(), early[3]) << "newest first, from the range's end";
  list.set_page_token(first->next_page_token());
  auto second = client.List(list);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->jobs_size(), 1);
  EXPECT_EQ(second->jobs(0).id(), early[0]);
  EXPECT_TRUE(second->next_page_token().empty());
  v1::ListJobsRequest later;
  (*later.mutable_labels())["group"] = "t";
  *later.mutable_created_after() = v1::ToProto(cut);
  auto after_cut = client.List(later);
  ASSERT_TRUE(after_cut.ok());
  EXPECT_EQ(after_cut->jobs_size(), 3);
  *later.mutable_created_before() = v1::ToProto(cut - absl::Seconds(1));
  EXPECT_EQ(client.List(later).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(BulkTest, BadRequestsAreRefusedAndChangeNothing) {
  auto server = Start();
  Failed(*server, "x", 3);
  struct Case {
    std::string what;
    v1::BulkRequest request;
    grpc::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  cases.push_back({"negative limit", Labelled("x"), grpc::INVALID_ARGUMENT, "limit"});
  cases.back().request.set_limit(-1);
  cases.push_back({"bad reason", Labelled("x", "a\x01"), grpc::INVALID_ARGUMENT, "reason"});
  cases.push_back({"times the wrong way", Labelled("x"), grpc::INVALID_ARGUMENT, "created_after"});
  *cases.back().request.mutable_filter()->mutable_created_after() = v1::ToProto(absl::Now());
  *cases.back().request.mutable_filter()->mutable_created_before() =
      v1::ToProto(absl::Now() - absl::Hours(1));
  cases.push_back({"unspecified state", Labelled("x"), grpc::INVALID_ARGUMENT, "state"});
  cases.back().request.mutable_filter()->add_states(Job::STATE_UNSPECIFIED);
  cases.push_back({"bad label", Labelled("x"), grpc::INVALID_ARGUMENT, "label"});
  (*cases.back().request.mutable_filter()->mutable_labels())["Bad Key!"] = "v";
  for (Op op : {kCancel, kRetry, kDelete}) {
    for (const Case& c : cases) {
      v1::BulkResponse counts;
      grpc::Status status = Bulk(*server, op, c.request, &counts);
      EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
      EXPECT_NE(status.error_message().find(c.says), std::string::npos)
          << c.what << ": " << status.error_message();
    }
  }
  EXPECT_EQ(Count(*server, Job::FAILED, "x"), 3);
}

}  // namespace
}  // namespace jobstream
