// The PostgreSQL store's guarantees, each tried by many connections at once against a real
// PostgreSQL 15: dense per-job sequences, one job per request_id, a queued job claimed by
// one claimer only, a webhook delivery held by one sender at a time, and nothing
// acknowledged lost when PostgreSQL itself crashes.
#include "server/storage/pg/pg_store.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/pg_test.h"

namespace jobstream::storage::pg {
namespace {

using v1::Job;
using v1::JobEvent;

class PgStoreTest : public testing::PgTest {
 protected:
  static Job NewJob(const std::string& id, const std::string& type = "t",
                    const std::string& request_id = "", const std::string& tenant = "") {
    Job job;
    job.set_id(id);
    job.set_type(type);
    job.set_tenant(tenant);
    job.set_request_id(request_id);
    job.set_state(Job::QUEUED);
    *job.mutable_create_time() = v1::ToProto(absl::Now());
    return job;
  }
  static JobEvent Event(JobEvent::Type type) {
    JobEvent e;
    e.set_type(type);
    return e;
  }
  // A store on a new database: on the shared server, or on `postgres`.
  std::unique_ptr<PgStore> Open(int pool = 8, testing::PostgresProcess* postgres = nullptr) {
    url_ = postgres != nullptr ? postgres->NewDatabase().value_or("") : NewDatabase();
    auto store = PgStore::Open(url_, pool);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // The transaction that last wrote the job's row.
  std::string RowVersion(const std::string& job_id) {
    auto conn = Connect(url_);
    auto row = conn->Exec("SELECT xmin FROM jobs WHERE id = $1", {PgParam::Text(job_id)});
    EXPECT_TRUE(row.ok() && row->rows() == 1);
    return row.ok() && row->rows() == 1 ? std::string(row->Get(0, 0)) : "";
  }
  std::string url_;
};

TEST_F(PgStoreTest, TransitionsFromManyConnectionsGetDenseSequences) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  google::protobuf::Struct params;
  (*params.mutable_fields())["n"].set_number_value(7);
  auto inserted = store->InsertJob(NewJob("job-a"), params, Event(JobEvent::CREATED));
  ASSERT_TRUE(inserted.ok()) << inserted.status();
  EXPECT_TRUE(inserted->created);
  EXPECT_EQ(inserted->job.last_sequence(), 1);

  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        auto events = store->Transition("job-a", [](Job& job, std::vector<JobEvent>& out) {
          job.mutable_progress()->set_fraction(job.progress().fraction() + 0.001);
          out.push_back(Event(JobEvent::PROGRESS));
          return absl::OkStatus();
        });
        if (!events.ok() || events->size() != 1) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  const std::vector<JobEvent> events = EventsOf(*store, "job-a", 0, 10000);
  ASSERT_EQ(events.size(), size_t{1 + kThreads * kEach});
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), int64_t(i + 1));
    EXPECT_EQ(events[i].status().last_sequence(), int64_t(i + 1));
  }
  // Each change saw the one before it: no update was lost.
  EXPECT_NEAR(events.back().status().progress().fraction(), 0.001 * kThreads * kEach, 1e-9);
  EXPECT_EQ(store->GetJob("job-a")->last_sequence(), 1 + kThreads * kEach);
  EXPECT_EQ(store->GetJobWithParams("job-a")->params().fields().at("n").number_value(), 7);
  // Reading resumes after any sequence.
  EXPECT_EQ(EventsOf(*store, "job-a", 300, 5).front().sequence(), 301);

  // A change that changes nothing writes nothing.
  const std::string version = RowVersion("job-a");
  auto same = store->Transition("job-a", [](Job&, std::vector<JobEvent>&) {
    return absl::OkStatus();
  });
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(same->empty());
  EXPECT_EQ(RowVersion("job-a"), version);

  // A change that fails writes nothing; an unknown job is NOT_FOUND.
  auto refused = store->Transition("job-a", [](Job& job, std::vector<JobEvent>& out) {
    job.set_state(Job::FAILED);
    out.push_back(Event(JobEvent::FAILED));
    return absl::FailedPreconditionError("no");
  });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->GetJob("job-a")->state(), Job::QUEUED);
  EXPECT_EQ(EventsOf(*store, "job-a").size(), size_t{1 + kThreads * kEach});
  EXPECT_EQ(store->Transition("nope", [](Job&, std::vector<JobEvent>&) { return absl::OkStatus(); })
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(PgStoreTest, TwinsOfOneRequestIdGetOneJob) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kTwins = 8;
  std::vector<absl::StatusOr<PgStore::Inserted>> results(kTwins, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kTwins; ++i) {
    threads.emplace_back([&, i] {
      results[i] = store->InsertJob(NewJob(absl::StrCat("twin-", i), "t", "req-1", "acme"), {},
                                    Event(JobEvent::CREATED));
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> ids;
  int created = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    ids.insert(r->job.id());
    created += r->created;
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(created, 1);
  int stored = 0;
  for (int i = 0; i < kTwins; ++i) stored += store->GetJob(absl::StrCat("twin-", i)).ok();
  EXPECT_EQ(stored, 1);
  // The same request_id of another tenant is another request.
  auto other =
      store->InsertJob(NewJob("other", "t", "req-1", "globex"), {}, Event(JobEvent::CREATED));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(other->created);
}

TEST_F(PgStoreTest, EachQueuedJobIsClaimedByOneClaimerInPriorityOrder) {
  auto store = Open(12);
  ASSERT_NE(store, nullptr);
  constexpr int kJobs = 300;
  for (int i = 0; i < kJobs; ++i) {
    Job job = NewJob(absl::StrCat("q", 1000 + i), i % 2 ? "a" : "b");
    job.set_priority(i < 10 ? 5 : 0);
    ASSERT_TRUE(store->InsertJob(job, {}, Event(JobEvent::CREATED)).ok());
  }
  // A job of another type, and one not ready yet, are never claimed.
  ASSERT_TRUE(store->InsertJob(NewJob("other-type", "c"), {}, Event(JobEvent::CREATED)).ok());
  Job later = NewJob("later");
  *later.mutable_run_at() = v1::ToProto(absl::Now() + absl::Hours(1));
  ASSERT_TRUE(store->InsertJob(later, {}, Event(JobEvent::CREATED)).ok());

  auto start = [](Job& job, std::vector<JobEvent>& out,
                  size_t index) -> absl::StatusOr<LeaseRecord> {
    job.set_state(Job::RUNNING);
    job.set_attempt(job.attempt() + 1);
    out.push_back(Event(JobEvent::STARTED));
    LeaseRecord lease;
    lease.set_lease_id("lease-of-" + job.id());
    lease.set_worker_id(absl::StrCat("holder-", index));
    return lease;
  };
  // The first claim takes the high-priority jobs first; `start` learns each one's place.
  auto first = store->ClaimLeased({"a", "b"}, absl::ToUnixMillis(absl::Now()), 10, start);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 10u);
  for (size_t k = 0; k < first->size(); ++k) {
    EXPECT_EQ((*first)[k].events.back().status().priority(), 5);
    EXPECT_EQ((*first)[k].lease.worker_id(), absl::StrCat("holder-", k));
  }

  absl::Mutex mu;
  std::vector<std::string> claimed;
  for (const auto& got : *first) claimed.push_back(got.events.back().job_id());
  std::vector<std::thread> claimers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 10; ++t) {
    claimers.emplace_back([&] {
      for (;;) {
        auto got = store->ClaimLeased({"a", "b"}, absl::ToUnixMillis(absl::Now()), 7, start);
        if (!got.ok()) {
          ++failures;
          return;
        }
        if (got->empty()) return;
        absl::MutexLock lock(&mu);
        for (const auto& one : *got) {
          EXPECT_EQ(one.events.back().type(), JobEvent::STARTED);
          EXPECT_EQ(one.events.back().sequence(), 2);
          EXPECT_EQ(one.lease.lease_id(), "lease-of-" + one.events.back().job_id());
          claimed.push_back(one.events.back().job_id());
        }
      }
    });
  }
  for (auto& t : claimers) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(claimed.size(), size_t{kJobs});
  EXPECT_EQ(std::set<std::string>(claimed.begin(), claimed.end()).size(), size_t{kJobs});
  EXPECT_EQ(store->GetJob("other-type")->state(), Job::QUEUED);
  EXPECT_EQ(store->GetJob("later")->state(), Job::QUEUED);
}

TEST_F(PgStoreTest, ALeaseFencesEveryCallOfItsAttempt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->InsertJob(NewJob("leased"), {}, Event(JobEvent::CREATED)).ok());
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  auto claimed =
      store->ClaimLeased({"t"}, now_ms, 5, [&](Job& job, std::vector<JobEvent>& out, size_t) {
        job.set_state(Job::RUNNING);
        job.set_attempt(1);
        out.push_back(Event(JobEvent::STARTED));
        LeaseRecord lease;
        lease.set_lease_id("lease-1");
        lease.set_deadline_ms(now_ms + 1000);
        return absl::StatusOr<LeaseRecord>(lease);
      });
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].lease.lease_id(), "lease-1");

  auto progress = [](Job& job, std::vector<JobEvent>& out) {
    job.mutable_progress()->set_fraction(0.5);
    out.push_back(Event(JobEvent::PROGRESS));
    return absl::OkStatus();
  };
  // A lease that is not the job's changes nothing.
  auto wrong = store->ChangeLeased("leased", "lease-0", false, progress);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition) << wrong.status();
  EXPECT_EQ(store->GetJob("leased")->last_sequence(), 2);
  ASSERT_TRUE(store->ChangeLeased("leased", "lease-1", false, progress).ok());
  EXPECT_EQ(store->GetJob("leased")->last_sequence(), 3);

  // Heartbeats move the deadline; an expired lease is found by the sweeper.
  EXPECT_EQ(*store->ExtendLeases({"lease-1", "lease-x"}, now_ms + 60000), 1);
  EXPECT_TRUE(store->ExpiredLeases(now_ms + 2000, 10)->empty());
  auto expired = store->ExpiredLeases(now_ms + 61000, 10);
  ASSERT_TRUE(expired.ok()) << expired.status();
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].first, "leased");
  EXPECT_EQ((*expired)[0].second.lease_id(), "lease-1");

  // Ending the lease ends every later call of the attempt.
  auto ended =
      store->ChangeLeased("leased", "lease-1", true, [](Job& job, std::vector<JobEvent>& out) {
        job.set_state(Job::SUCCEEDED);
        out.push_back(Event(JobEvent::SUCCEEDED));
        return absl::OkStatus();
      });
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(store->ChangeLeased("leased", "lease-1", false, progress).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->GetJob("leased")->state(), Job::SUCCEEDED);
  EXPECT_TRUE(store->ExpiredLeases(now_ms + 61000, 10)->empty());
  EXPECT_EQ(store->ChangeLeased("nope", "lease-1", false, progress).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(PgStoreTest, ALeasedBatchIsOneTransactionAndEachChangeIsFencedAlone) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  for (const std::string& id : ids) {
    ASSERT_TRUE(store->InsertJob(NewJob(id), {}, Event(JobEvent::CREATED)).ok());
  }
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  auto claimed =
      store->ClaimLeased({"t"}, now_ms, 10, [&](Job& job, std::vector<JobEvent>& out, size_t) {
        job.set_state(Job::RUNNING);
        out.push_back(Event(JobEvent::STARTED));
        LeaseRecord lease;
        lease.set_lease_id("lease-" + job.id());
        lease.set_deadline_ms(now_ms + 60000);
        return absl::StatusOr<LeaseRecord>(lease);
      });
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), ids.size());

  auto progress = [](double fraction) {
    return [fraction](Job& job, std::vector<JobEvent>& out) {
      job.mutable_progress()->set_fraction(fraction);
      out.push_back(Event(JobEvent::PROGRESS));
      return absl::OkStatus();
    };
  };
  auto succeed = [](Job& job, std::vector<JobEvent>& out) {
    job.set_state(Job::SUCCEEDED);
    out.push_back(Event(JobEvent::SUCCEEDED));
    return absl::OkStatus();
  };
  auto unchanged = [](Job&, std::vector<JobEvent>&) { return absl::OkStatus(); };
  auto refuse = [](Job& job, std::vector<JobEvent>& out) {
    job.set_state(Job::FAILED);  // undone: the change fails
    return absl::InvalidArgumentError("not this one");
  };
  std::vector<PgStore::LeasedChange> batch = {
      {"a", "lease-a", false, progress(0.25)},
      {"b", "lease-x", false, progress(0.5)},  // not b's lease
      {"c", "lease-c", true, succeed},
      {"d", "lease-d", false, refuse},
      {"a", "lease-a", true, succeed},  // after a's first change, in the same transaction
      {"c", "lease-c", false, progress(0.75)},  // c's lease ended just before
      // Renewals: d's lease for 5 s from a second on, though its job is unchanged; and one
      // under a lease that is not b's.
      {"d", "lease-d", false, unchanged, now_ms + 1000, 5000},
      {"b", "lease-x", false, unchanged, now_ms + 1000, 5000},
  };
  ASSERT_TRUE(store->ChangeLeasedBatch(batch).ok());
  ASSERT_TRUE(batch[0].result.ok()) << batch[0].result.status();
  EXPECT_EQ(batch[0].result->at(0).sequence(), 3);
  // Each event carries the job as it stood after its own change, not after the batch.
  EXPECT_EQ(batch[0].result->at(0).status().state(), Job::RUNNING);
  EXPECT_EQ(batch[0].result->at(0).status().last_sequence(), 3);
  EXPECT_EQ(batch[1].result.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(batch[2].result.ok()) << batch[2].result.status();
  EXPECT_EQ(batch[3].result.status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(batch[4].result.ok()) << batch[4].result.status();
  EXPECT_EQ(batch[4].result->at(0).sequence(), 4);
  EXPECT_EQ(batch[4].result->at(0).status().state(), Job::SUCCEEDED);
  EXPECT_EQ(batch[4].result->at(0).status().progress().fraction(), 0.25);
  EXPECT_EQ(batch[5].result.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(batch[6].result.ok()) << batch[6].result.status();
  EXPECT_TRUE(batch[6].result->empty());
  EXPECT_EQ(batch[6].lease.deadline_ms(), now_ms + 6000);
  EXPECT_EQ(batch[6].lease.duration_ms(), 5000);
  EXPECT_EQ(batch[6].job.id(), "d");
  EXPECT_EQ(batch[6].job.state(), Job::RUNNING);
  EXPECT_EQ(batch[7].result.status().code(), absl::StatusCode::kFailedPrecondition);

  // What went in went in one commit; the refused changes wrote nothing.
  EXPECT_EQ(RowVersion("a"), RowVersion("c"));
  EXPECT_NE(RowVersion("a"), RowVersion("b"));
  EXPECT_NE(RowVersion("a"), RowVersion("d"));
  EXPECT_EQ(store->GetJob("a")->state(), Job::SUCCEEDED);
  EXPECT_EQ(store->GetJob("a")->last_sequence(), 4);
  EXPECT_EQ(store->GetJob("b")->last_sequence(), 2);
  EXPECT_EQ(store->GetJob("c")->last_sequence(), 3);
  EXPECT_EQ(store->GetJob("d")->state(), Job::RUNNING);
  EXPECT_EQ(store->GetJob("d")->last_sequence(), 2);
  auto held = store->LeasesHeldBy("");
  ASSERT_TRUE(held.ok()) << held.status();
  std::set<std::string> still;
  for (const auto& [job_id, lease] : *held) {
    still.insert(job_id);
    EXPECT_EQ(lease.deadline_ms(), now_ms + (job_id == "d" ? 6000 : 60000)) << job_id;
  }
  EXPECT_EQ(still, (std::set<std::string>{"b", "d"}));
  auto events = EventsOf(*store, "a");
  ASSERT_EQ(events.size(), 4u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].sequence(), int64_t(i) + 1);

  // Batches over the same jobs, naming them in either order, from many connections at
  // once: every change commits (none lost to a deadlock, which the pool would retry only
  // five times) and each job's sequences stay dense.
  constexpr int kThreads = 6, kBatches = 40;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < kBatches; ++n) {
        std::vector<PgStore::LeasedChange> changes;
        for (int k = 0; k < 2; ++k) {
          const std::string& id = (t + n + k) % 2 == 0 ? "b" : "d";
          changes.push_back({id, "lease-" + id, false, progress((t * kBatches + n) / 1000.0)});
        }
        if (!store->ChangeLeasedBatch(changes).ok()) ++failed;
        for (const auto& c : changes) {
          if (!c.result.ok()) ++failed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  for (const char* id : {"b", "d"}) {
    auto all = EventsOf(*store, id);
    ASSERT_EQ(all.size(), 2u + kThreads * kBatches);
    for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].sequence(), int64_t(i) + 1) << id;
  }
}

TEST_F(PgStoreTest, AWebhookDeliveryIsHeldByOneSenderAtATime) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Job job = NewJob("hooked");
  job.mutable_webhook()->set_url("http://127.0.0.1:1/hook");  // terminal events by default
  ASSERT_TRUE(store->InsertJob(job, {}, Event(JobEvent::CREATED)).ok());
  EXPECT_TRUE(store->PendingDeliveries(10)->empty());  // "created" is not wanted
  ASSERT_TRUE(store
                  ->Transition("hooked",
                               [](Job& job, std::vector<JobEvent>& out) {
                                 job.set_state(Job::SUCCEEDED);
                                 out.push_back(Event(JobEvent::SUCCEEDED));
                                 return absl::OkStatus();
                               })
                  .ok());
  auto pending = store->PendingDeliveries(10);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].job_id, "hooked");
  EXPECT_EQ((*pending)[0].sequence, 2);

  // Eight senders at once: one holds it.
  const int64_t now_ms = absl::ToUnixMillis(absl::Now()) + 10;
  const int64_t hold_ms = now_ms + 60000;
  std::atomic<int> taken{0};
  std::vector<std::thread> senders;
  for (int i = 0; i < 8; ++i) {
    senders.emplace_back([&] {
      auto t = store->TakeDelivery("hooked", 2, now_ms, hold_ms);
      if (t.ok() && t->has_value()) {
        EXPECT_EQ((*t)->record.id(), "hooked-2");
        EXPECT_EQ((*t)->event.type(), JobEvent::SUCCEEDED);
        EXPECT_EQ((*t)->job.webhook().url(), "http://127.0.0.1:1/hook");
        ++taken;
      }
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(taken, 1);
  // Held, it is not due until the hold passes; then another server may take it over, and
  // the first sender's late outcome is not written.
  EXPECT_FALSE(store->TakeDelivery("hooked", 2, now_ms + 1000, now_ms + 2000)->has_value());
  auto over = store->TakeDelivery("hooked", 2, hold_ms, hold_ms + 60000);
  ASSERT_TRUE(over.ok() && over->has_value()) << over.status();
  v1::WebhookDelivery late = (*over)->record;
  late.set_attempts(1);
  late.set_state(v1::WebhookDelivery::DELIVERED);
  EXPECT_FALSE(*store->RecordDelivery("hooked", 2, hold_ms, late, std::nullopt));
  // The holder's outcome: failed, due again later; then delivered, and no longer pending.
  v1::WebhookDelivery record = (*over)->record;
  record.set_attempts(1);
  record.set_last_status(503);
  EXPECT_TRUE(*store->RecordDelivery("hooked", 2, hold_ms + 60000, record, now_ms + 5));
  EXPECT_EQ(store->PendingDeliveries(10)->at(0).due_ms, now_ms + 5);
  auto again = store->TakeDelivery("hooked", 2, now_ms + 5, now_ms + 100);
  ASSERT_TRUE(again.ok() && again->has_value()) << again.status();
  EXPECT_EQ((*again)->record.attempts(), 1);
  record.set_attempts(2);
  record.set_last_status(200);
  record.set_state(v1::WebhookDelivery::DELIVERED);
  EXPECT_TRUE(*store->RecordDelivery("hooked", 2, now_ms + 100, record, std::nullopt));
  EXPECT_TRUE(store->PendingDeliveries(10)->empty());
  EXPECT_FALSE(store->TakeDelivery("hooked", 2, hold_ms * 2, hold_ms * 3)->has_value());
  auto shown = store->ListDeliveries("hooked");
  ASSERT_TRUE(shown.ok() && shown->size() == 1) << shown.status();
  EXPECT_EQ(shown->front().state(), v1::WebhookDelivery::DELIVERED);
  EXPECT_EQ(shown->front().attempts(), 2);
}

TEST_F(PgStoreTest, NothingAcknowledgedIsLostWhenPostgresCrashes) {
  testing::PostgresProcess& postgres = Private();  // crashed below: not the shared one
  auto store = Open(4, &postgres);
  ASSERT_NE(store, nullptr);
  std::vector<std::string> acknowledged;
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      auto r = store->InsertJob(NewJob(absl::StrCat("c", i)), {}, Event(JobEvent::CREATED));
      if (r.ok()) {
        absl::MutexLock lock(&mu);
        acknowledged.push_back(r->job.id());
      } else {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Status restarted = postgres.Restart(SIGKILL);  // a crash, then crash recovery
  absl::SleepFor(absl::Milliseconds(500));
  stop = true;
  writer.join();
  ASSERT_TRUE(restarted.ok()) << restarted;
  ASSERT_GT(acknowledged.size(), 10u);
  for (const std::string& id : acknowledged) {
    auto job = store->GetJob(id);  // the pool reconnects
    EXPECT_TRUE(job.ok()) << id << ": " << job.status();
  }
}

}  // namespace
}  // namespace jobstream::storage::pg
