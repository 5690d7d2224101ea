// Batches on the real binary: 10,000 children fanned in with dense, complete CHILD events;
// the `then` job sees every count; a parent without one ends as its children did; cancel
// of the parent; kill -9 mid-batch loses no child and no CHILD event; a retried call makes
// one batch; bad input refused naming the field with nothing written.
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "tests/support/job_test.h"

namespace jobstream {
namespace {

using testing::JobTest;
using v1::Job;
using v1::JobEvent;

class BatchTest : public JobTest {
 protected:
  static v1::SubmitBatchRequest Batch(int children, int step_ms, int failing = 0) {
    v1::SubmitBatchRequest request;
    for (int i = 0; i < children; ++i) {
      *request.add_children() = Demo(step_ms, /*fail=*/i < failing);
    }
    return request;
  }

  grpc::Status SubmitBatch(const v1::SubmitBatchRequest& request,
                           v1::SubmitBatchResponse* response) {
    grpc::ClientContext ctx;
    return jobs_->SubmitBatch(&ctx, request, response);
  }
  v1::SubmitBatchResponse MustSubmitBatch(const v1::SubmitBatchRequest& request) {
    v1::SubmitBatchResponse response;
    grpc::Status s = SubmitBatch(request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  // The parent's CHILD events name each child once, and nothing else.
  static void ExpectEachChildOnce(const std::vector<JobEvent>& events,
                                  const v1::SubmitBatchResponse& batch) {
    std::multiset<std::string> seen;
    for (const JobEvent& e : events) {
      if (e.type() == JobEvent::CHILD) seen.insert(e.child().job_id());
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(batch.child_ids_size()));
    for (const std::string& id : batch.child_ids()) {
      EXPECT_EQ(seen.count(id), 1u) << "child " << id;
    }
  }
};

JOBSTREAM_BOTH_STORES(BatchTest);

TEST_P(BatchTest, TenThousandChildrenFanInWithDenseCompleteChildEventsAndTheThenJobSeesAll) {
  Start();
  // PostgreSQL runs these demo jobs at ~250/s on this machine (RocksDB: ~7,000/s): 2,000
  // there keep the suite's time (the batch itself is the same code at any size).
  const int kChildren = postgres() ? 2000 : 10000;
  v1::SubmitBatchRequest request = Batch(kChildren, 0, /*failing=*/3);
  *request.mutable_then() = Demo(0);
  (*request.mutable_labels())["sweep"] = "nightly";
  v1::SubmitBatchResponse batch = MustSubmitBatch(request);
  ASSERT_EQ(batch.child_ids_size(), kChildren);
  const Job& created = batch.parent();
  EXPECT_EQ(created.type(), "jobstream.batch");
  EXPECT_EQ(created.state(), Job::WAITING);
  EXPECT_EQ(created.batch().total(), kChildren);
  EXPECT_EQ(created.labels().at("sweep"), "nightly");

  // ~3 s in memory here; each child is two synced writes, so a slow disk under a loaded
  // CI machine takes far longer (the bound is ctest's, not a speed target).
  const Job parent = Finished(created.id(), 300);
  EXPECT_EQ(parent.state(), Job::SUCCEEDED)
      << parent.error().message() << "; children ended: " << parent.batch().succeeded() << " + "
      << parent.batch().failed() << " of " << kChildren;
  EXPECT_EQ(parent.batch().succeeded(), kChildren - 3);
  EXPECT_EQ(parent.batch().failed(), 3);
  EXPECT_DOUBLE_EQ(parent.progress().fraction(), 1.0);
  ASSERT_FALSE(parent.batch().then_job_id().empty());

  // CREATED, WAITING, one CHILD per child, WAITING for the then job, SUCCEEDED.
  const std::vector<JobEvent> events = Events(created.id());
  ASSERT_EQ(events.size(), static_cast<size_t>(kChildren) + 4);
  EXPECT_EQ(events[0].type(), JobEvent::CREATED);
  EXPECT_EQ(events[1].type(), JobEvent::WAITING);
  EXPECT_EQ(events[kChildren + 2].type(), JobEvent::WAITING);
  EXPECT_EQ(events[kChildren + 3].type(), JobEvent::SUCCEEDED);
  ExpectEachChildOnce(events, batch);
  double fraction = 0;
  for (const JobEvent& e : events) {
    if (e.type() != JobEvent::CHILD) continue;
    EXPECT_GT(e.status().progress().fraction(), fraction) << "moves with each child";
    fraction = e.status().progress().fraction();
    if (e.child().state() == Job::FAILED) {
      EXPECT_NE(e.child().summary().find("fail_at"), std::string::npos) << e.child().summary();
    }
  }

  // The then job ran after the last child, with the batch's counts in its params.
  Job then;
  {
    grpc::ClientContext ctx;
    v1::GetStatusRequest get;
    get.set_job_id(parent.batch().then_job_id());
    ASSERT_TRUE(jobs_->GetStatus(&ctx, get, &then).ok());
  }
  EXPECT_EQ(then.parent_id(), created.id());
  const auto& counts = then.params().fields().at("batch").struct_value().fields();
  EXPECT_EQ(counts.at("parent_id").string_value(), created.id());
  EXPECT_EQ(counts.at("total").number_value(), kChildren);
  EXPECT_EQ(counts.at("succeeded").number_value(), kChildren - 3);
  EXPECT_EQ(counts.at("failed").number_value(), 3);
  EXPECT_EQ(parent.result().struct_value().fields().at("steps").number_value(), 1)
      << "the parent ends with the then job's result";
  EXPECT_NE(parent.progress().message().find("the then job " + then.id() + " SUCCEEDED"),
            std::string::npos)
      << parent.progress().message();

  // The children are found by the batch's label.
  grpc::ClientContext ctx;
  v1::ListJobsRequest list;
  (*list.mutable_labels())["jobstream/batch"] = created.id();
  list.add_states(Job::FAILED);
  v1::ListJobsResponse failed;
  ASSERT_TRUE(jobs_->ListJobs(&ctx, list, &failed).ok());
  EXPECT_EQ(failed.jobs_size(), 3);
}

TEST_P(BatchTest, WithoutAThenJobTheParentEndsAsItsChildrenDid) {
  Start();
  const Job all = Finished(MustSubmitBatch(Batch(5, 0)).parent().id());
  EXPECT_EQ(all.state(), Job::SUCCEEDED);
  EXPECT_EQ(all.result().struct_value().fields().at("succeeded").number_value(), 5);
  const Job some = Finished(MustSubmitBatch(Batch(5, 0, /*failing=*/2)).parent().id());
  EXPECT_EQ(some.state(), Job::FAILED);
  EXPECT_NE(some.error().message().find("2 of 5 children did not succeed"), std::string::npos)
      << some.error().message();
}

TEST_P(BatchTest, CancellingTheParentCancelsEveryUnfinishedChildAndNoThenJobIsMade) {
  Start();
  v1::SubmitBatchRequest request = Batch(40, 10000);  // 16 run at once, the rest queue
  *request.mutable_then() = Demo(0);
  const v1::SubmitBatchResponse batch = MustSubmitBatch(request);
  grpc::ClientContext ctx;
  v1::CancelJobRequest cancel;
  cancel.set_job_id(batch.parent().id());
  Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(&ctx, cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), Job::CANCELLED);
  for (const std::string& id : batch.child_ids()) {
    EXPECT_EQ(Finished(id).state(), Job::CANCELLED) << id;
  }
  const Job parent = Finished(batch.parent().id());
  EXPECT_TRUE(parent.batch().then_job_id().empty()) << "no then job after a cancel";
  const std::vector<JobEvent> events = Events(parent.id());
  EXPECT_EQ(events.back().type(), JobEvent::CANCELLED);
  // Those queued were cancelled with it, each counted; the running ones end after it.
  EXPECT_GE(parent.batch().cancelled(), 40 - 16);
}

TEST_P(BatchTest, KillNineMidBatchLosesNoChildAndNoChildEvent) {
  Start();
  v1::SubmitBatchRequest request = Batch(300, 50);  // ~1 s of work on 16 runners
  for (auto& child : *request.mutable_children()) child.set_max_attempts(2);  // one cut off
  const v1::SubmitBatchResponse batch = MustSubmitBatch(request);
  // Killed once some children have ended (and been counted) and most have not.
  Job before;
  for (int i = 0; i < 1000 && before.batch().succeeded() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
    grpc::ClientContext ctx;
    v1::GetStatusRequest get;
    get.set_job_id(batch.parent().id());
    ASSERT_TRUE(jobs_->GetStatus(&ctx, get, &before).ok());
  }
  server_->Kill();
  ASSERT_GT(before.batch().succeeded(), 0);
  ASSERT_LT(before.batch().succeeded(), 300) << "the kill came after the batch had ended";
  Start();
  const Job parent = Finished(batch.parent().id());
  EXPECT_EQ(parent.state(), Job::SUCCEEDED) << parent.error().message();
  EXPECT_EQ(parent.batch().succeeded(), 300);
  ExpectEachChildOnce(Events(parent.id()), batch);
}

TEST_P(BatchTest, ARetriedCallMakesOneBatch) {
  Start();
  v1::SubmitBatchRequest request = Batch(3, 0);
  request.set_request_id("sweep-2026-12-06");
  const v1::SubmitBatchResponse first = MustSubmitBatch(request);
  const v1::SubmitBatchResponse again = MustSubmitBatch(request);
  EXPECT_EQ(again.parent().id(), first.parent().id());
  EXPECT_EQ(again.child_ids_size(), 3);
  EXPECT_EQ(again.child_ids(2), first.child_ids(2));
  // A Submit's request ids are apart from a batch's.
  v1::SubmitRequest single = Demo(0);
  single.set_request_id("sweep-2026-12-06");
  EXPECT_NE(MustSubmit(single).id(), first.parent().id());
  EXPECT_EQ(JobCount(), 5);
}

TEST_P(BatchTest, TheCliSubmitsAFileOfChildrenAndWatchesTheParentToItsEnd) {
  Start();
  const std::string file = dir_.sub("children.jsonl");
  std::ofstream(file) << R"({"type": "demo.steps", "params": {"steps": ["a"], "step_ms": 0}})"
                      << "\n\n"
                      << R"({"type": "demo.steps", "params": {"steps": ["b"], "step_ms": 10}})"
                      << "\n";
  std::string out;
  EXPECT_EQ(Cli("batch " + file + " --then_type=demo.steps --labels=run=cli --watch", &out), 0)
      << out;
  EXPECT_NE(out.find("\"CHILD\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"SUCCEEDED\""), std::string::npos) << out;
  EXPECT_EQ(JobCount(), 4);  // the parent, two children, the then job

  std::ofstream(file) << R"({"type": "demo.steps"})" << "\n" << "{not json\n";
  EXPECT_EQ(Cli("batch " + file, &out), 3);
  EXPECT_NE(out.find("children.jsonl:2"), std::string::npos) << out;
  EXPECT_EQ(Cli("batch " + file + "-missing", &out), 3);
  EXPECT_EQ(Cli("batch " + file + " --then_params={}", &out), 3);
  EXPECT_EQ(JobCount(), 4);
}

TEST_P(BatchTest, BadInputIsRefusedNamingTheFieldAndNothingIsWritten) {
  Start();
  auto refused = [&](const v1::SubmitBatchRequest& request, const std::string& says) {
    v1::SubmitBatchResponse response;
    grpc::Status s = SubmitBatch(request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_NE(s.error_message().find(says), std::string::npos) << s.error_message();
  };
  refused(v1::SubmitBatchRequest(), "at least one child");
  refused(Batch(10001, 0), "at most 10000");
  v1::SubmitBatchRequest bad = Batch(5, 0);
  bad.mutable_children(3)->set_type("no.such.type");
  refused(bad, "children[3]: unknown job type");
  bad = Batch(5, 0);
  bad.mutable_children(1)->set_request_id("x");
  refused(bad, "children[1].request_id");
  bad = Batch(5, 0);
  bad.mutable_children(2)->add_depends_on("01m941vq5xyq9jpb6gsxj9zf0w");
  refused(bad, "children[2].depends_on");
  bad = Batch(5, 0);
  bad.mutable_then()->set_type("");
  refused(bad, "then: type is required");
  bad = Batch(5, 0);
  (*bad.mutable_children(0)->mutable_labels())["jobstream/batch"] = "mine";
  refused(bad, "children[0].labels");
  EXPECT_EQ(JobCount(), 0);
}

}  // namespace
}  // namespace jobstream
