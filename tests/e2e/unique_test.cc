// Unique jobs on the real binary and each store: concurrent colliding Submits make one job;
// a window's end or the holder's end frees the key; request_id is something else; bad
// unique_* input is refused with nothing written.
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/job_test.h"

namespace jobstream {
namespace {

using v1::Job;

class UniqueTest : public testing::JobTest {
 protected:
  static v1::SubmitRequest Keyed(v1::SubmitRequest request, const std::string& key,
                                 absl::Duration window) {
    request.set_unique_key(key);
    if (window == absl::ZeroDuration()) {
      request.set_unique_while(Job::ACTIVE);
    } else {
      *request.mutable_unique_for() = v1::ToProto(window);
    }
    return request;
  }
};
JOBSTREAM_BOTH_STORES(UniqueTest);

TEST_P(UniqueTest, EightConcurrentCollidingSubmitsMakeOneJob) {
  Start();
  const v1::SubmitRequest request = Keyed(Demo(10), "report:2026-12-05", absl::Hours(1));
  std::vector<Job> answers(8);
  std::vector<grpc::Status> statuses(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { statuses[i] = Submit(request, &answers[i]); });
  }
  for (std::thread& t : threads) t.join();
  int created = 0;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_EQ(answers[i].id(), answers[0].id()) << "one job";
    if (!answers[i].deduplicated()) ++created;
    EXPECT_EQ(answers[i].unique_key(), "report:2026-12-05");
  }
  EXPECT_EQ(created, 1) << "the others answered deduplicated";
  EXPECT_EQ(JobCount(), 1);
  // Even after it ended: the window holds the key.
  EXPECT_EQ(Finished(answers[0].id()).state(), Job::SUCCEEDED);
  Job again;
  ASSERT_TRUE(Submit(request, &again).ok());
  EXPECT_TRUE(again.deduplicated());
  EXPECT_EQ(again.id(), answers[0].id());
  EXPECT_EQ(again.state(), Job::SUCCEEDED) << "answered as it stands";
}

TEST_P(UniqueTest, TheWindowEndsOrTheHolderEndsAndTheKeyIsFree) {
  Start();
  const v1::SubmitRequest windowed = Keyed(Demo(10), "w", absl::Seconds(2));
  const Job first = MustSubmit(windowed);
  EXPECT_FALSE(first.deduplicated());
  EXPECT_TRUE(MustSubmit(windowed).deduplicated());
  absl::SleepFor(absl::Milliseconds(2300));
  const Job second = MustSubmit(windowed);
  EXPECT_FALSE(second.deduplicated()) << "the window passed: a new job";
  EXPECT_NE(second.id(), first.id());
  EXPECT_TRUE(MustSubmit(windowed).deduplicated());

  // ACTIVE: held while live, whatever its state; free once it ended.
  const v1::SubmitRequest active = Keyed(Demo(800), "a", absl::ZeroDuration());
  const Job holder = MustSubmit(active);
  const Job dup = MustSubmit(active);
  EXPECT_TRUE(dup.deduplicated());
  EXPECT_EQ(dup.id(), holder.id());
  EXPECT_EQ(Finished(holder.id()).state(), Job::SUCCEEDED);
  const Job next = MustSubmit(active);
  EXPECT_FALSE(next.deduplicated());
  EXPECT_NE(next.id(), holder.id());

  // Keys are per tenant and per key: another key is another job.
  EXPECT_FALSE(MustSubmit(Keyed(Demo(10), "b", absl::ZeroDuration())).deduplicated());
}

TEST_P(UniqueTest, ARequestIdRetryIsNotDeduplicatedButAnsweredAlike) {
  Start();
  v1::SubmitRequest request = Keyed(Demo(10), "k", absl::Minutes(5));
  request.set_request_id("call-1");
  const Job first = MustSubmit(request), retry = MustSubmit(request);
  EXPECT_EQ(retry.id(), first.id());
  EXPECT_FALSE(retry.deduplicated()) << "a retry of the same call";
  request.set_request_id("call-2");
  const Job other = MustSubmit(request);
  EXPECT_EQ(other.id(), first.id());
  EXPECT_TRUE(other.deduplicated()) << "another call with the key";
}

TEST_P(UniqueTest, BadUniqueInputIsRefusedNamingTheField) {
  Start();
  struct Case {
    std::string name;
    v1::SubmitRequest request;
    std::string says;
  };
  std::vector<Case> cases;
  v1::SubmitRequest no_policy = Demo(10);
  no_policy.set_unique_key("k");
  cases.push_back({"no policy", no_policy, "a unique_key needs one of unique_for"});
  v1::SubmitRequest both = Keyed(Demo(10), "k", absl::Seconds(5));
  both.set_unique_while(Job::ACTIVE);
  cases.push_back({"both", both, "a unique_key needs one of unique_for"});
  v1::SubmitRequest no_key = Demo(10);
  no_key.set_unique_while(Job::ACTIVE);
  cases.push_back({"no key", no_key, "unique_for and unique_while need a unique_key"});
  cases.push_back({"zero window", Keyed(Demo(10), "k", absl::Milliseconds(10)),
                   "unique_for is 10ms; it must be 1s to"});
  cases.push_back({"long key", Keyed(Demo(10), std::string(300, 'k'), absl::Seconds(5)),
                   "unique_key has 300 characters; at most 256"});
  cases.push_back({"control", Keyed(Demo(10), "a\nb", absl::Seconds(5)),
                   "unique_key \"a\\nb\" must be printable ASCII"});
  v1::SubmitRequest bad_while = Demo(10);
  bad_while.set_unique_key("k");
  bad_while.set_unique_while(static_cast<Job::UniqueWhile>(7));
  cases.push_back({"unknown while", bad_while, "unique_while 7 is not ACTIVE"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Job ignored;
    grpc::Status s = Submit(c.request, &ignored);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find(c.says), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(JobCount(), 0) << "nothing written";
}

TEST_P(UniqueTest, TheCliSubmitsWithAUniqueKey) {
  Start();
  std::string first, second, out;
  // The job runs until cancelled: still active at the second submit however slow the CLI
  // starts (a sanitizer build's took long enough for a default demo job to end).
  const std::string submit =
      "submit demo.steps --params='{\"steps\":[\"x\"],\"step_ms\":600000,\"ticks\":0}' "
      "--unique_key=nightly --unique_for=active --json";
  ASSERT_EQ(Cli(submit, &first), 0) << first;
  ASSERT_EQ(Cli(submit, &second), 0) << second;
  Job a, b;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(first, &a).ok()) << first;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(second, &b).ok()) << second;
  EXPECT_EQ(a.id(), b.id());
  EXPECT_FALSE(a.deduplicated());
  EXPECT_TRUE(b.deduplicated());
  EXPECT_EQ(a.unique_while(), Job::ACTIVE);
  Cancel(a.id());
  EXPECT_EQ(Cli("submit demo.steps --unique_key=k --unique_for=soon", &out), 3) << out;
  EXPECT_NE(out.find("--unique_for takes a duration"), std::string::npos) << out;
}

}  // namespace
}  // namespace jobstream
