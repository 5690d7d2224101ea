// Per-key limits on the real binary and each store: a type's keyConcurrency is never
// exceeded under eight workers (checked from the jobs' own events), its keyRate holds within
// 10%, keys take turns, ListJobTypes names the keys at their limit, and a bad
// concurrency_key is refused with nothing written (through gRPC and the CLI).
#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/job_test.h"

namespace jobstream {
namespace {

using testing::JobTest;
using v1::Job;
using v1::JobEvent;

class KeyLimitsTest : public JobTest {
 protected:
  // "capped": two running per key; "paced": five starts a second per key; "plain": none.
  void StartWithTypes() {
    const std::string config = dir_.sub("types.json");
    std::ofstream(config) << R"({"types": [
        {"name": "capped", "external": {}, "keyConcurrency": 2},
        {"name": "paced", "external": {}, "keyRate": 5},
        {"name": "plain", "external": {}}]})";
    Start({"--config=" + config});
    workers_ = v1::WorkerService::NewStub(server_->Channel());
  }

  Job SubmitKeyed(const std::string& type, const std::string& key) {
    v1::SubmitRequest request;
    request.set_type(type);
    request.set_concurrency_key(key);
    return MustSubmit(request);
  }

  // Leases up to `max` jobs of `type`, waiting up to `wait`.
  std::vector<v1::LeasedJob> Lease(const std::string& type, int max,
                                   absl::Duration wait = absl::ZeroDuration()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::LeaseJobRequest request;
    request.add_types(type);
    request.set_max_jobs(max);
    request.set_worker_id("w");
    if (wait > absl::ZeroDuration()) *request.mutable_wait() = v1::ToProto(wait);
    v1::LeaseJobResponse response;
    grpc::Status s = workers_->LeaseJob(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.jobs().begin(), response.jobs().end()};
  }

  void Complete(const v1::LeasedJob& leased) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::CompleteJobRequest request;
    request.set_lease_id(leased.lease_id());
    Job job;
    grpc::Status s = workers_->CompleteJob(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  // `n` workers leasing one job of `type` at a time, holding it `hold`, until `total` done.
  void RunWorkers(const std::string& type, int n, int total, absl::Duration hold) {
    std::atomic<int> done{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&] {
        const absl::Time give_up = absl::Now() + absl::Seconds(60);
        while (done.load() < total && absl::Now() < give_up) {
          for (const v1::LeasedJob& leased : Lease(type, 1, absl::Milliseconds(200))) {
            absl::SleepFor(hold);
            Complete(leased);
            ++done;
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    ASSERT_EQ(done.load(), total);
  }

  // When a job's attempt started and ended, from its events.
  std::pair<absl::Time, absl::Time> RunOf(const std::string& id) {
    absl::Time started = absl::InfinitePast(), ended = absl::InfinitePast();
    for (const JobEvent& e : Events(id)) {
      if (e.type() == JobEvent::STARTED) started = v1::ToTime(e.time());
      if (e.type() == JobEvent::SUCCEEDED) ended = v1::ToTime(e.time());
    }
    EXPECT_NE(started, absl::InfinitePast()) << id;
    EXPECT_NE(ended, absl::InfinitePast()) << id;
    return {started, ended};
  }

  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

JOBSTREAM_BOTH_STORES(KeyLimitsTest);

TEST_P(KeyLimitsTest, KeyConcurrencyIsNeverExceededUnderEightWorkers) {
  StartWithTypes();
  // Three keys (one of them none: "", which is a key like the others) of 2 each: at most
  // six of the eight workers can be busy.
  std::map<std::string, std::vector<std::string>> by_key;
  for (int i = 0; i < 16; ++i) {
    for (const char* key : {"customer-1", "customer-2", ""}) {
      by_key[key].push_back(SubmitKeyed("capped", key).id());
    }
  }
  RunWorkers("capped", 8, 48, absl::Milliseconds(40));
  for (const auto& [key, ids] : by_key) {
    // +1 at each start, -1 at each end; ends first at one instant (a slot is free once
    // the end is written, and the start that takes it is stamped after).
    std::vector<std::pair<absl::Time, int>> changes;
    for (const std::string& id : ids) {
      ASSERT_EQ(Finished(id).concurrency_key(), key);
      auto [started, ended] = RunOf(id);
      changes.push_back({started, +1});
      changes.push_back({ended, -1});
    }
    std::sort(changes.begin(), changes.end());
    int running = 0, most = 0;
    for (const auto& [at, delta] : changes) {
      running += delta;
      most = std::max(most, running);
    }
    EXPECT_LE(most, 2) << "key \"" << key << "\" ran " << most << " at once";
    EXPECT_EQ(most, 2) << "key \"" << key << "\": the limit was reached, so it was what held";
  }
}

TEST_P(KeyLimitsTest, KeyRateHoldsWithinTenPercent) {
  StartWithTypes();
  std::map<std::string, std::vector<std::string>> by_key;
  for (int i = 0; i < 25; ++i) {
    for (const char* key : {"a", "b"}) by_key[key].push_back(SubmitKeyed("paced", key).id());
  }
  RunWorkers("paced", 4, 50, absl::ZeroDuration());
  for (const auto& [key, ids] : by_key) {
    std::vector<absl::Time> starts;
    for (const std::string& id : ids) starts.push_back(RunOf(id).first);
    std::sort(starts.begin(), starts.end());
    // A bucket of one second's starts (5), then 5 a second: in any span of w seconds at
    // most 5 + 5w start. The bucket counts by the clock a claim read as it began; a STARTED
    // stamp is read later in the claim's transaction, so a span between stamps may be
    // shorter than the bucket's by a claim's duration: 150 ms of slack, three quarters of
    // one start, so one start too many is still caught (1 ms was too little with seven
    // tests beside this one under the sanitizers: 13 starts between stamps 1.599 s apart;
    // 50 ms on a slower machine: 9 starts between stamps 0.737 s apart).
    for (size_t i = 0; i < starts.size(); ++i) {
      for (size_t j = i; j < starts.size(); ++j) {
        const double w = absl::ToDoubleSeconds(starts[j] - starts[i]) + 0.15;
        EXPECT_LE(static_cast<double>(j - i + 1), 5 + 5 * w)
            << "key " << key << ": starts " << i << ".." << j << " within " << w << " s";
      }
    }
    // After the first bucket, the pace is the rate's, within 10%.
    const double rate = static_cast<double>(starts.size() - 5) /
                        absl::ToDoubleSeconds(starts.back() - starts.front());
    EXPECT_GE(rate, 4.5) << "key " << key;
    EXPECT_LE(rate, 5.5) << "key " << key;
  }
}

TEST_P(KeyLimitsTest, KeysTakeTurnsAndListJobTypesNamesTheKeysAtTheirLimit) {
  StartWithTypes();
  // A key's backlog delays another key's jobs by a few jobs, not by the backlog.
  for (int i = 0; i < 300; ++i) SubmitKeyed("plain", "big");
  std::set<std::string> small;
  for (int i = 0; i < 5; ++i) small.insert(SubmitKeyed("plain", "small").id());
  std::vector<std::string> order;
  while (order.size() < 20) {
    std::vector<v1::LeasedJob> leased = Lease("plain", 1);
    ASSERT_EQ(leased.size(), 1u);
    order.push_back(leased[0].job().id());
    Complete(leased[0]);
  }
  int seen = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (small.contains(order[i])) {
      ++seen;
      EXPECT_LE(i + 1, static_cast<size_t>(2 * seen)) << "small's job " << seen;
    }
  }
  EXPECT_EQ(seen, 5);

  // A key at its concurrency holds back its own jobs, not another key's.
  for (int i = 0; i < 10; ++i) SubmitKeyed("capped", "busy");
  SubmitKeyed("capped", "idle");
  std::vector<v1::LeasedJob> leased = Lease("capped", 10);
  std::map<std::string, int> leased_by_key;
  for (const auto& l : leased) ++leased_by_key[l.job().concurrency_key()];
  EXPECT_EQ(leased_by_key, (std::map<std::string, int>{{"busy", 2}, {"idle", 1}}));
  EXPECT_TRUE(Lease("capped", 10).empty()) << "busy is at its limit";

  grpc::ClientContext ctx;
  v1::ListJobTypesResponse types;
  ASSERT_TRUE(jobs_->ListJobTypes(&ctx, v1::ListJobTypesRequest(), &types).ok());
  const v1::JobTypeInfo* capped = nullptr;
  for (const auto& t : types.types()) {
    if (t.name() == "capped") capped = &t;
    if (t.name() == "plain") {
      EXPECT_EQ(t.keys_at_limit_size(), 0);
      EXPECT_EQ(t.key_concurrency(), 0);
    }
    if (t.name() == "paced") {
      EXPECT_DOUBLE_EQ(t.key_rate(), 5);
    }
  }
  ASSERT_NE(capped, nullptr);
  EXPECT_EQ(capped->key_concurrency(), 2);
  EXPECT_EQ(capped->keys_at_limit_count(), 1);
  ASSERT_EQ(capped->keys_at_limit_size(), 1);
  EXPECT_EQ(capped->keys_at_limit(0).key(), "busy");
  EXPECT_EQ(capped->keys_at_limit(0).running(), 2);
  EXPECT_EQ(capped->keys_at_limit(0).queued(), 8);
  EXPECT_TRUE(capped->keys_at_limit(0).concurrency());

  // One ends: busy starts another, and no more.
  Complete(leased[0].job().concurrency_key() == "busy" ? leased[0] : leased[1]);
  std::vector<v1::LeasedJob> next = Lease("capped", 10, absl::Seconds(5));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job().concurrency_key(), "busy");
}

TEST_P(KeyLimitsTest, ABadConcurrencyKeyIsRefusedWithNothingWritten) {
  StartWithTypes();
  for (const std::string& bad : {std::string(129, 'k'), std::string("tab\there"),
                                std::string("nul\0x", 5), std::string("\x7f")}) {
    v1::SubmitRequest request;
    request.set_type("capped");
    request.set_concurrency_key(bad);
    Job job;
    grpc::Status s = Submit(request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("concurrency_key"), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(JobCount(), 0);
  // 128 printable characters, spaces included, are a key.
  EXPECT_EQ(SubmitKeyed("capped", std::string(120, 'k') + " a/b:c~").concurrency_key().size(),
            127u);
  // The CLI's submit takes one, and says what is wrong with a bad one.
  std::string out;
  ASSERT_EQ(Cli("submit capped --concurrency_key=from-cli --json", &out), 0) << out;
  Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &job).ok()) << out;
  EXPECT_EQ(job.concurrency_key(), "from-cli");
  EXPECT_NE(Cli("submit capped --concurrency_key=" + std::string(129, 'k'), &out), 0);
  EXPECT_NE(out.find("concurrency_key has 129 characters"), std::string::npos) << out;
  EXPECT_EQ(JobCount(), 2);
}

}  // namespace
}  // namespace jobstream
