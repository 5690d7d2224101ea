// Many cancels of one job at once (a double click, a retrying client): one CANCELLED event,
// the log dense, every caller answered with the job cancelled.
#include <thread>

#include "tests/support/job_test.h"

namespace jobstream {
namespace {

using testing::JobTest;
using v1::Job;
using v1::JobEvent;

class CancelRaceTest : public JobTest {};
JOBSTREAM_BOTH_STORES(CancelRaceTest);

TEST_P(CancelRaceTest, ConcurrentCancelsOfAQueuedJobMakeOneCancelledEvent) {
  Start();
  for (int round = 0; round < 20; ++round) {
    v1::SubmitRequest later = Demo(10);
    later.mutable_run_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    const Job job = MustSubmit(later);
    std::vector<std::thread> callers;
    std::atomic<int> cancelled{0}, retry{0};
    for (int i = 0; i < 8; ++i) {
      callers.emplace_back([&] {
        auto stub = v1::JobService::NewStub(server_->Channel());
        for (;;) {
          grpc::ClientContext ctx;
          v1::CancelJobRequest request;
          request.set_job_id(job.id());
          Job out;
          grpc::Status s = stub->CancelJob(&ctx, request, &out);
          if (s.error_code() == grpc::StatusCode::ABORTED) {  // changing state: try again
            ++retry;
            continue;
          }
          EXPECT_TRUE(s.ok()) << s.error_message();
          EXPECT_EQ(out.state(), Job::CANCELLED);
          ++cancelled;
          return;
        }
      });
    }
    for (auto& t : callers) t.join();
    EXPECT_EQ(cancelled.load(), 8);
    const std::vector<JobEvent> events = Events(job.id());  // checks they are dense
    ASSERT_EQ(events.size(), 2u) << "round " << round;
    EXPECT_EQ(events[1].type(), JobEvent::CANCELLED);
  }
}

}  // namespace
}  // namespace jobstream
