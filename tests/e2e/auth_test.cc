// Tokens and tenants on the real server binary: every RPC without a token, with a wrong
// one and with one lacking the role gets its exact status and writes nothing; another
// tenant's job is NOT_FOUND with the very message a job that never existed gets; a
// request_id is each tenant's own; workers lease only their tenant's jobs; SIGHUP re-reads
// the token file; the CLI presents $JOBSTREAM_TOKEN and makes entries the server accepts.
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/job_client.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/support/http_get.h"
#include "tests/support/job_helpers.h"
#include "gtest/gtest.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/workers.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/store_test.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::ChannelOptions;
using client::JobClient;
using grpc::StatusCode;
using testing::BinaryPath;
using testing::RunCommand;
using testing::ServerProcess;
using v1::Job;

struct Token {
  std::string secret, name, tenant;
  std::vector<std::string> roles;
};
const Token kAlice{"alice-0123456789abcdef", "alice", "acme", {"submit", "read"}};
const Token kReader{"reader-0123456789abcdef", "reader", "acme", {"read"}};
const Token kAcmeWorker{"acme-worker-0123456789", "acme-worker", "acme", {"work"}};
const Token kBob{"bob-0123456789abcdef", "bob", "bolt", {"submit", "read", "work"}};
const Token kRoot{"root-0123456789abcdef", "root", "ops", {"admin"}};
const Token kScraper{"scraper-0123456789abcdef", "scraper", "ops", {"metrics"}};
const Token kNobody{"nobody-0123456789abcdef", "nobody", "acme", {"read"}};  // not in the file

std::string Entry(const Token& t) {
  v1::Sha256 digest;
  digest.Update(t.secret);
  std::string roles;
  for (const std::string& r : t.roles) absl::StrAppend(&roles, roles.empty() ? "" : ",", "\"", r, "\"");
  return absl::StrCat(R"({"sha256": ")", digest.HexDigest(), R"(", "name": ")", t.name,
                      R"(", "tenant": ")", t.tenant, R"(", "roles": [)", roles, "]}");
}

std::string TokenFile(const std::vector<Token>& tokens) {
  std::string entries;
  for (const Token& t : tokens) absl::StrAppend(&entries, entries.empty() ? "" : ",\n", Entry(t));
  return absl::StrCat(R"({"tokens": [)", entries, "]}");
}

// A message with the job id taken out, to compare a refusal about one id with another's.
std::string WithoutId(const std::string& message, const std::string& id) {
  return absl::StrReplaceAll(message, {{id, "<id>"}});
}

// Runs on each store (store_test.h).
class AuthTest : public testing::StoreTest {
 public:  // the calls EveryRpc makes
  void SetUp() override {
    testing::StoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    Start({});
  }
  void Start(std::vector<std::string> flags) {
    std::ofstream(dir_.sub("tokens.json"))
        << TokenFile({kAlice, kReader, kAcmeWorker, kBob, kRoot, kScraper});
    std::ofstream(dir_.sub("config.json")) << R"({"types": [
      {"name": "ext", "external": {"leaseDuration": "30s"}}]})";
    flags.push_back("--auth_tokens=" + dir_.sub("tokens.json"));
    flags.push_back("--metrics_listen=127.0.0.1:0");  // the server picks: no port race
    flags.push_back("--metrics_tenants");
    flags.push_back("--config=" + dir_.sub("config.json"));
    for (std::string& f : StoreFlags()) flags.push_back(std::move(f));
    server_ = std::make_unique<ServerProcess>(dir_.sub("data"), flags);
    metrics_port_ = server_->metrics_port();
  }

  std::shared_ptr<grpc::Channel> Channel(const Token* token) {
    ChannelOptions options;
    if (token != nullptr) options.token = token->secret;
    auto channel = JobClient::Connect(server_->address(), options);
    EXPECT_TRUE(channel.ok());
    return *channel;
  }
  std::unique_ptr<v1::JobService::Stub> Jobs(const Token* token) {
    return v1::JobService::NewStub(Channel(token));
  }
  std::unique_ptr<v1::WorkerService::Stub> Work(const Token* token) {
    return v1::WorkerService::NewStub(Channel(token));
  }
  static void Deadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }
  Job Submit(const Token& token, const std::string& type = "demo.steps",
             const std::string& request_id = "") {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::SubmitRequest request;
    request.set_type(type);
    request.set_request_id(request_id);
    if (type == "demo.steps") {
      (*request.mutable_params()->mutable_fields())["ticks"].set_number_value(0);
      (*request.mutable_params()->mutable_fields())["step_ms"].set_number_value(0);
    }
    Job job;
    grpc::Status s = Jobs(&token)->Submit(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  grpc::Status GetStatus(const Token* token, const std::string& id, Job* job = nullptr) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::GetStatusRequest request;
    request.set_job_id(id);
    Job ignored;
    return Jobs(token)->GetStatus(&ctx, request, job != nullptr ? job : &ignored);
  }
  Job WaitFinished(const Token& token, const std::string& id) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::WaitJobRequest request;
    request.set_job_id(id);
    request.mutable_timeout()->set_seconds(5);
    Job job;
    EXPECT_TRUE(Jobs(&token)->WaitJob(&ctx, request, &job).ok());
    return job;
  }
  // Every job id the root token can list.
  std::vector<std::string> AllJobs() {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    v1::ListJobsResponse response;
    EXPECT_TRUE(Jobs(&kRoot)->ListJobs(&ctx, request, &response).ok());
    std::vector<std::string> ids;
    for (const Job& job : response.jobs()) ids.push_back(job.id());
    return ids;
  }

  testing::TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  int metrics_port_ = 0;
};

// One RPC made with a given token (or none), and the role it needs.
struct Rpc {
  std::string name;
  std::string role;
  std::function<grpc::Status(AuthTest&, const Token*)> call;
};

template <typename Response>
grpc::Status ReadToEnd(std::unique_ptr<grpc::ClientReader<Response>> reader) {
  Response message;
  while (reader->Read(&message)) {
  }
  return reader->Finish();
}

std::vector<Rpc> EveryRpc(const std::string& job_id) {
  auto ctx = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return c;
  };
  return {
      {"Submit", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::SubmitRequest r;
         r.set_type("demo.steps");
         Job j;
         return t.Jobs(k)->Submit(c.get(), r, &j);
       }},
      {"GetStatus", "read", [=](AuthTest& t, const Token* k) { return t.GetStatus(k, job_id); }},
      {"WaitJob", "read", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::WaitJobRequest r;
         r.set_job_id(job_id);
         Job j;
         return t.Jobs(k)->WaitJob(c.get(), r, &j);
       }},
      {"ListJobs", "read", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::ListJobsResponse r;
         return t.Jobs(k)->ListJobs(c.get(), {}, &r);
       }},
      {"GetJobStats", "admin", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::JobStats r;
         return t.Jobs(k)->GetJobStats(c.get(), {}, &r);
       }},
      {"ListJobTypes", "read", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::ListJobTypesResponse r;
         return t.Jobs(k)->ListJobTypes(c.get(), {}, &r);
       }},
      {"WatchJob", "read", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::WatchJobRequest r;
         r.set_job_id(job_id);
         auto stub = t.Jobs(k);
         return ReadToEnd(stub->WatchJob(c.get(), r));
       }},
      {"WatchJobs", "read", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         c->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
         auto stub = t.Jobs(k);
         return ReadToEnd(stub->WatchJobs(c.get(), {}));
       }},
      {"GetArtifact", "read", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::GetArtifactRequest r;
         r.set_job_id(job_id);
         r.set_name("none.txt");
         auto stub = t.Jobs(k);
         return ReadToEnd(stub->GetArtifact(c.get(), r));
       }},
      {"CancelJob", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::CancelJobRequest r;
         r.set_job_id(job_id);
         Job j;
         return t.Jobs(k)->CancelJob(c.get(), r, &j);
       }},
      {"RetryJob", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::RetryJobRequest r;
         r.set_job_id(job_id);
         Job j;
         return t.Jobs(k)->RetryJob(c.get(), r, &j);
       }},
      {"BulkRetry", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::BulkRequest r;
         r.set_dry_run(true);
         v1::BulkResponse b;
         return t.Jobs(k)->BulkRetry(c.get(), r, &b);
       }},
      {"BulkCancel", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::BulkRequest r;
         r.set_dry_run(true);
         v1::BulkResponse b;
         return t.Jobs(k)->BulkCancel(c.get(), r, &b);
       }},
      {"BulkDelete", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::BulkRequest r;
         r.set_dry_run(true);
         v1::BulkResponse b;
         return t.Jobs(k)->BulkDelete(c.get(), r, &b);
       }},
      {"DeleteJob", "submit", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::DeleteJobRequest r;
         r.set_job_id(job_id);
         v1::DeleteJobResponse d;
         return t.Jobs(k)->DeleteJob(c.get(), r, &d);
       }},
      {"PurgeJobs", "admin", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::PurgeJobsRequest r;
         r.mutable_finished_before()->set_seconds(time(nullptr));
         v1::PurgeJobsResponse p;
         return t.Jobs(k)->PurgeJobs(c.get(), r, &p);
       }},
      {"PauseType", "admin", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::PauseTypeRequest r;
         r.set_type("ext");
         v1::JobTypeInfo p;
         return t.Jobs(k)->PauseType(c.get(), r, &p);
       }},
      {"ResumeType", "admin", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::ResumeTypeRequest r;
         r.set_type("ext");
         v1::JobTypeInfo p;
         return t.Jobs(k)->ResumeType(c.get(), r, &p);
       }},
      {"LeaseJob", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::LeaseJobRequest r;
         r.add_types("ext");
         v1::LeaseJobResponse l;
         return t.Work(k)->LeaseJob(c.get(), r, &l);
       }},
      {"ReportProgress", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::ReportProgressRequest r;
         r.set_lease_id(job_id + ".1.x");
         v1::ReportProgressResponse p;
         return t.Work(k)->ReportProgress(c.get(), r, &p);
       }},
      {"CompleteJob", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::CompleteJobRequest r;
         r.set_lease_id(job_id + ".1.x");
         Job j;
         return t.Work(k)->CompleteJob(c.get(), r, &j);
       }},
      {"FailJob", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::FailJobRequest r;
         r.set_lease_id(job_id + ".1.x");
         Job j;
         return t.Work(k)->FailJob(c.get(), r, &j);
       }},
      {"ReleaseJob", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::ReleaseJobRequest r;
         r.set_lease_id(job_id + ".1.x");
         Job j;
         return t.Work(k)->ReleaseJob(c.get(), r, &j);
       }},
      {"EndJobs", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::EndJobsRequest r;
         r.add_endings()->mutable_complete()->set_lease_id(job_id + ".1.x");
         v1::EndJobsResponse e;
         grpc::Status s = t.Work(k)->EndJobs(c.get(), r, &e);
         if (!s.ok() || e.results(0).error().code() == 0) return s;
         // Its one ending's answer, as CompleteJob would have given it.
         return grpc::Status(static_cast<StatusCode>(e.results(0).error().code()),
                             e.results(0).error().message());
       }},
      {"UploadArtifact", "work", [=](AuthTest& t, const Token* k) {
         auto c = ctx();
         v1::Artifact a;
         auto stub = t.Work(k);
         auto writer = stub->UploadArtifact(c.get(), &a);
         v1::UploadArtifactRequest r;
         r.mutable_header()->set_lease_id(job_id + ".1.x");
         r.mutable_header()->set_name("x.txt");
         r.set_data("hello");
         r.set_finish_write(true);
         writer->Write(r);
         writer->WritesDone();
         return writer->Finish();
       }},
  };
}

JOBSTREAM_BOTH_STORES(AuthTest);

TEST_P(AuthTest, EveryRpcWantsAKnownTokenWithItsRoleAndWritesNothingOtherwise) {
  const Job job = Submit(kAlice);
  WaitFinished(kAlice, job.id());
  const std::vector<std::string> before = AllJobs();
  for (const Rpc& rpc : EveryRpc(job.id())) {
    SCOPED_TRACE(rpc.name);
    grpc::Status none = rpc.call(*this, nullptr);
    EXPECT_EQ(none.error_code(), StatusCode::UNAUTHENTICATED) << none.error_message();
    EXPECT_NE(none.error_message().find("Bearer"), std::string::npos) << none.error_message();
    grpc::Status wrong = rpc.call(*this, &kNobody);
    EXPECT_EQ(wrong.error_code(), StatusCode::UNAUTHENTICATED) << wrong.error_message();
    // A token of the same tenant without the role: the worker's for reads, else the reader's.
    const Token& lacking = rpc.role == "read" ? kAcmeWorker : kReader;
    grpc::Status denied = rpc.call(*this, &lacking);
    EXPECT_EQ(denied.error_code(), StatusCode::PERMISSION_DENIED) << denied.error_message();
    EXPECT_NE(denied.error_message().find("\"" + rpc.role + "\" role"), std::string::npos)
        << denied.error_message();
    EXPECT_NE(denied.error_message().find(rpc.name), std::string::npos) << denied.error_message();
  }
  EXPECT_EQ(AllJobs(), before) << "no refused call wrote anything";
  Job still;
  ASSERT_TRUE(GetStatus(&kAlice, job.id(), &still).ok());
  EXPECT_EQ(still.state(), Job::SUCCEEDED) << "nor cancelled or deleted it";
}

TEST_P(AuthTest, AnotherTenantsJobIsNotFoundExactlyAsOneThatNeverExisted) {
  const Job job = Submit(kAlice);
  EXPECT_EQ(job.tenant(), "acme");
  WaitFinished(kAlice, job.id());
  const std::string never = "01m81rd5kq5g91qm659eqts4b0";  // a well-formed id no job has
  // Each call by bob on alice's job answers as it does on an id that never existed.
  for (const Rpc& rpc : EveryRpc(job.id())) {
    if (rpc.name == "Submit" || rpc.name == "ListJobs" || rpc.name == "ListJobTypes" ||
        rpc.name == "WatchJobs" || rpc.name == "PurgeJobs" || rpc.name == "LeaseJob" ||
        rpc.name == "GetJobStats" || rpc.name.rfind("Bulk", 0) == 0) {
      continue;  // no one job's: the bulk calls are checked below
    }
    SCOPED_TRACE(rpc.name);
    grpc::Status theirs = rpc.call(*this, &kBob);
    grpc::Status nothing;
    for (const Rpc& other : EveryRpc(never)) {
      if (other.name == rpc.name) nothing = other.call(*this, &kBob);
    }
    EXPECT_EQ(theirs.error_code(), nothing.error_code()) << theirs.error_message();
    EXPECT_EQ(WithoutId(theirs.error_message(), job.id()), WithoutId(nothing.error_message(), never));
    EXPECT_NE(theirs.error_code(), StatusCode::OK);
  }
  // A bulk call acts within its caller's tenant: bob's delete of every ended job (and his
  // try at naming alice's tenant) leaves hers.
  {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::BulkResponse counts;
    ASSERT_TRUE(Jobs(&kBob)->BulkDelete(&ctx, v1::BulkRequest(), &counts).ok());
    EXPECT_EQ(counts.matched(), 0);
    grpc::ClientContext ctx2;
    Deadline(ctx2);
    v1::BulkRequest theirs;
    theirs.mutable_filter()->set_tenant("acme");
    EXPECT_EQ(Jobs(&kBob)->BulkDelete(&ctx2, theirs, &counts).error_code(),
              StatusCode::PERMISSION_DENIED);
  }
  // Alice still has it; root (admin) sees every tenant's.
  EXPECT_TRUE(GetStatus(&kAlice, job.id()).ok());
  EXPECT_TRUE(GetStatus(&kReader, job.id()).ok()) << "the same tenant, another token";
  EXPECT_TRUE(GetStatus(&kRoot, job.id()).ok());

  // Listing: each tenant its own.
  const Job bobs = Submit(kBob);
  auto list = [&](const Token& token) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::ListJobsResponse response;
    EXPECT_TRUE(Jobs(&token)->ListJobs(&ctx, {}, &response).ok());
    std::vector<std::string> ids;
    for (const Job& j : response.jobs()) ids.push_back(j.id());
    return ids;
  };
  EXPECT_EQ(list(kAlice), std::vector<std::string>{job.id()});
  EXPECT_EQ(list(kBob), std::vector<std::string>{bobs.id()});
  EXPECT_EQ(list(kRoot).size(), 2u);

  // Once deleted, the tombstone says so to its tenant only.
  {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::DeleteJobRequest request;
    request.set_job_id(job.id());
    v1::DeleteJobResponse response;
    ASSERT_TRUE(Jobs(&kAlice)->DeleteJob(&ctx, request, &response).ok());
  }
  grpc::Status alices = GetStatus(&kAlice, job.id());
  EXPECT_EQ(alices.error_code(), StatusCode::NOT_FOUND);
  EXPECT_NE(alices.error_message().find("was deleted"), std::string::npos) << alices.error_message();
  grpc::Status bobs_view = GetStatus(&kBob, job.id());
  EXPECT_EQ(bobs_view.error_message(), "no job with id " + job.id());
}

TEST_P(AuthTest, WatchJobsShowsEachTenantOnlyItsOwnJobs) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stub = Jobs(&kBob);
  auto reader = stub->WatchJobs(&ctx, {});
  grpc::ClientContext root_ctx;
  root_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto root_stub = Jobs(&kRoot);
  auto root_reader = root_stub->WatchJobs(&root_ctx, {});
  // Give both streams time to be accepted, then make one job per tenant.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Job alices = Submit(kAlice);
  const Job bobs = Submit(kBob);
  WaitFinished(kBob, bobs.id());
  WaitFinished(kAlice, alices.id());
  std::set<std::string> seen_by_bob, seen_by_root;
  v1::JobEvent event;
  while (reader->Read(&event)) {
    seen_by_bob.insert(event.job_id());
    if (event.job_id() == bobs.id() && event.type() == v1::JobEvent::SUCCEEDED) break;
  }
  while (root_reader->Read(&event)) {
    seen_by_root.insert(event.job_id());
    if (seen_by_root.size() == 2 && v1::IsTerminal(event.type())) break;
  }
  ctx.TryCancel();
  root_ctx.TryCancel();
  EXPECT_EQ(seen_by_bob, std::set<std::string>{bobs.id()});
  EXPECT_TRUE(seen_by_root.count(alices.id()) && seen_by_root.count(bobs.id()));
}

TEST_P(AuthTest, ARequestIdIsEachTenantsOwn) {
  const Job a1 = Submit(kAlice, "demo.steps", "order-42");
  const Job a2 = Submit(kAlice, "demo.steps", "order-42");
  const Job b1 = Submit(kBob, "demo.steps", "order-42");
  EXPECT_EQ(a1.id(), a2.id()) << "the same tenant's retry";
  EXPECT_NE(a1.id(), b1.id()) << "another tenant's request";
  EXPECT_EQ(b1.tenant(), "bolt");
}

TEST_P(AuthTest, DependenciesAndUniqueKeysAreEachTenantsOwn) {
  const Job alices = Submit(kAlice);
  auto submit = [&](const Token& token, v1::SubmitRequest request, Job* job) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    request.set_type("demo.steps");
    return Jobs(&token)->Submit(&ctx, request, job);
  };
  // Another tenant's job cannot be waited for: not found, as if it never existed.
  v1::SubmitRequest after;
  after.add_depends_on(alices.id());
  Job job;
  grpc::Status s = submit(kBob, after, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "depends_on[0]: job " + alices.id() + " not found");
  ASSERT_TRUE(submit(kAlice, after, &job).ok());
  // The same unique_key in two tenants: two jobs.
  v1::SubmitRequest keyed;
  keyed.set_unique_key("nightly");
  keyed.set_unique_while(Job::ACTIVE);
  Job a, a_again, b;
  ASSERT_TRUE(submit(kAlice, keyed, &a).ok());
  ASSERT_TRUE(submit(kAlice, keyed, &a_again).ok());
  ASSERT_TRUE(submit(kBob, keyed, &b).ok());
  EXPECT_TRUE(a_again.deduplicated());
  EXPECT_EQ(a_again.id(), a.id());
  EXPECT_FALSE(b.deduplicated());
  EXPECT_NE(b.id(), a.id());
}

TEST_P(AuthTest, TenantsTakeTurnsSoABacklogDelaysAnotherTenantByAFewJobs) {
  {  // acme's backlog first: 2,000 from 8 threads on one channel (not a channel a call),
     // as fast as the token's submit rate allows
    auto stub = Jobs(&kAlice);
    std::vector<std::thread> submitters;
    for (int t = 0; t < 8; ++t) {
      submitters.emplace_back([&stub] {
        for (int i = 0; i < 250;) {
          grpc::ClientContext ctx;
          Deadline(ctx);
          v1::SubmitRequest request;
          request.set_type("ext");
          Job job;
          grpc::Status s = stub->Submit(&ctx, request, &job);
          if (s.error_code() == StatusCode::RESOURCE_EXHAUSTED) {  // over the token's rate
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            continue;
          }
          ASSERT_TRUE(s.ok()) << s.error_message();
          ++i;
        }
      });
    }
    for (std::thread& t : submitters) t.join();
  }
  std::set<std::string> bolts;
  for (int i = 0; i < 10; ++i) bolts.insert(Submit(kBob, "ext").id());
  std::vector<std::string> order;  // as an admin worker leases them, five at a time
  while (order.size() < 40) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::LeaseJobRequest request;
    request.add_types("ext");
    request.set_max_jobs(5);
    v1::LeaseJobResponse response;
    ASSERT_TRUE(Work(&kRoot)->LeaseJob(&ctx, request, &response).ok());
    ASSERT_GT(response.jobs_size(), 0);
    for (const auto& leased : response.jobs()) order.push_back(leased.job().id());
  }
  // Turn about: bolt's k-th job is among the first 2k jobs leased, not after 2,000.
  int seen = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (bolts.contains(order[i])) {
      ++seen;
      EXPECT_LE(i + 1, static_cast<size_t>(2 * seen)) << "bolt's job " << seen;
    }
  }
  EXPECT_EQ(seen, 10);
}

TEST_P(AuthTest, WorkersLeaseOnlyTheirTenantsJobsUnlessAdmin) {
  const Job acme_job = Submit(kAlice, "ext");
  const Job bolt_job = Submit(kBob, "ext");
  auto lease = [&](const Token& token) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::LeaseJobRequest request;
    request.add_types("ext");
    request.set_max_jobs(10);
    v1::LeaseJobResponse response;
    grpc::Status s = Work(&token)->LeaseJob(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  };
  v1::LeaseJobResponse acme = lease(kAcmeWorker);
  ASSERT_EQ(acme.jobs_size(), 1);
  EXPECT_EQ(acme.jobs(0).job().id(), acme_job.id());
  v1::LeaseJobResponse bolt = lease(kBob);
  ASSERT_EQ(bolt.jobs_size(), 1);
  EXPECT_EQ(bolt.jobs(0).job().id(), bolt_job.id());

  // A lease of another tenant's job is not held for this worker, even with its id.
  {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::CompleteJobRequest request;
    request.set_lease_id(bolt.jobs(0).lease_id());
    Job job;
    grpc::Status s = Work(&kAcmeWorker)->CompleteJob(&ctx, request, &job);
    EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << s.error_message();
  }
  Job bolt_now;
  ASSERT_TRUE(GetStatus(&kBob, bolt_job.id(), &bolt_now).ok());
  EXPECT_EQ(bolt_now.state(), Job::RUNNING) << "untouched";

  // Released, an admin worker takes any tenant's.
  for (const auto& [token, leased] : {std::pair{&kAcmeWorker, &acme}, std::pair{&kBob, &bolt}}) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::ReleaseJobRequest request;
    request.set_lease_id(leased->jobs(0).lease_id());
    Job job;
    ASSERT_TRUE(Work(token)->ReleaseJob(&ctx, request, &job).ok());
  }
  EXPECT_EQ(lease(kRoot).jobs_size(), 2);
}

TEST_P(AuthTest, SighupReadsTheTokenFileAgainAndABrokenOneChangesNothing) {
  ASSERT_TRUE(GetStatus(&kBob, "01m81rd5kq5g91qm659eqts4b0").error_code() == StatusCode::NOT_FOUND);
  std::ofstream(dir_.sub("tokens.json"), std::ios::trunc) << TokenFile({kAlice, kRoot});
  kill(server_->pid(), SIGHUP);
  auto bob_refused = [&] {
    return GetStatus(&kBob, "01m81rd5kq5g91qm659eqts4b0").error_code() ==
           StatusCode::UNAUTHENTICATED;
  };
  for (int i = 0; i < 200 && !bob_refused(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(bob_refused()) << "bob's token was taken out";
  std::ofstream(dir_.sub("tokens.json"), std::ios::trunc) << R"({"tokens": [{"sha256": "x"}]})";
  kill(server_->pid(), SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(GetStatus(&kAlice, "01m81rd5kq5g91qm659eqts4b0").error_code(), StatusCode::NOT_FOUND)
      << "the tokens in force stay";
}

TEST_P(AuthTest, MetricsWantATokenWithTheMetricsOrReadRole) {
  auto scrape = [&](const Token* token, const std::string& raw = "") {
    std::map<std::string, std::string> headers;
    if (token != nullptr) headers["Authorization"] = "Bearer " + token->secret;
    if (!raw.empty()) headers["Authorization"] = raw;
    return testing::HttpGet(metrics_port_, "/metrics", headers);
  };
  testing::HttpReply none = scrape(nullptr);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"jobstream\"");
  EXPECT_EQ(none.body.find("jobstream_"), std::string::npos) << "no metric leaks";
  EXPECT_EQ(scrape(&kNobody).status, 401) << "a token not in the file";
  EXPECT_EQ(scrape(nullptr, "Basic c2NyYXBlcjp4").status, 401);
  testing::HttpReply worker = scrape(&kAcmeWorker);
  EXPECT_EQ(worker.status, 403);
  EXPECT_NE(worker.body.find("needs the role metrics or read"), std::string::npos) << worker.body;
  for (const Token* allowed : {&kScraper, &kReader, &kAlice, &kRoot}) {
    testing::HttpReply ok = scrape(allowed);
    EXPECT_EQ(ok.status, 200) << allowed->name;
    EXPECT_NE(ok.body.find("jobstream_jobs_submitted_total{type=\"ext\"} 0\n"), std::string::npos)
        << allowed->name;
  }
  // With --metrics_tenants, jobs are counted by tenant too.
  WaitFinished(kAlice, Submit(kAlice).id());
  WaitFinished(kAlice, Submit(kAlice).id());
  WaitFinished(kBob, Submit(kBob).id());
  const std::string text = scrape(&kScraper).body;
  EXPECT_NE(text.find("jobstream_tenant_jobs_submitted_total{tenant=\"acme\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("jobstream_tenant_jobs_succeeded_total{tenant=\"bolt\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("jobstream_jobs_submitted_total{type=\"demo.steps\"} 3\n"),
            std::string::npos);
  // The metrics role opens /metrics and nothing else.
  EXPECT_EQ(GetStatus(&kScraper, "01m81rd5kq5g91qm659eqts4b0").error_code(),
            StatusCode::PERMISSION_DENIED);
}

TEST_P(AuthTest, TheCliPresentsItsTokenAndMakesEntriesTheServerAccepts) {
  const std::string cli = BinaryPath("client/jobstream");
  auto [code, out] = RunCommand(absl::StrCat("JOBSTREAM_TOKEN=", kAlice.secret, " ", cli,
                                             " --server=", server_->address(), " whoami --json"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find(R"("tenant":"acme")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("authRequired":true)"), std::string::npos) << out;
  std::tie(code, out) = RunCommand(absl::StrCat(cli, " --server=", server_->address(),
                                                " list 2>&1"));
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("UNAUTHENTICATED"), std::string::npos) << out;

  // `jobstream token` makes a token and the entry for it; a server given the entry knows it.
  std::tie(code, out) = RunCommand(
      absl::StrCat(cli, " token ci-bot --tenant=acme --roles=submit,read --json"));
  ASSERT_EQ(code, 0) << out;
  const size_t t = out.find(R"("token":")") + 9;
  const std::string token = out.substr(t, out.find('"', t) - t);
  const size_t e = out.find(R"("entry":)") + 8;
  const std::string entry = out.substr(e, out.rfind('}') - e);
  std::ofstream(dir_.sub("tokens.json"), std::ios::trunc)
      << absl::StrCat(R"({"tokens": [)", entry, "]}");
  kill(server_->pid(), SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::ofstream(dir_.sub("token.txt")) << token << "\n";
  std::tie(code, out) = RunCommand(absl::StrCat(cli, " --server=", server_->address(),
                                                " --token_file=", dir_.sub("token.txt"),
                                                " whoami"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find(R"("name":"ci-bot","tenant":"acme","roles":["submit","read"])"),
            std::string::npos) << out;
  std::tie(code, out) = RunCommand(absl::StrCat(cli, " token x --tenant=Bad --roles=read 2>&1"));
  EXPECT_EQ(code, 3) << out;
  EXPECT_NE(out.find("tenant"), std::string::npos) << out;
}

// The same server with tight limits.
class AuthLimitsTest : public AuthTest {
 public:
  void SetUp() override {
    testing::StoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    Start({"--max_submits_per_second=5", "--max_queued_per_tenant=8", "--max_labels=2"});
  }
  grpc::Status TrySubmit(const Token& token, const std::string& type,
                         const std::string& request_id = "", std::string* retry_after = nullptr,
                         Job* job = nullptr) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::SubmitRequest request;
    request.set_type(type);
    request.set_request_id(request_id);
    Job ignored;
    grpc::Status s = Jobs(&token)->Submit(&ctx, request, job != nullptr ? job : &ignored);
    if (retry_after != nullptr) {
      auto it = ctx.GetServerTrailingMetadata().find("retry-after");
      *retry_after = it == ctx.GetServerTrailingMetadata().end()
                         ? ""
                         : std::string(it->second.data(), it->second.size());
    }
    return s;
  }
};

JOBSTREAM_BOTH_STORES(AuthLimitsTest);

TEST_P(AuthLimitsTest, EachTokensSubmitsArePacedAndTheRefusalSaysWhenToComeBack) {
  // Five at once, then one a fifth of a second: a slow build (ASan, PostgreSQL) takes
  // long enough per Submit to earn more, so the refusal comes after as many as the time
  // taken allows — and no later.
  const absl::Time start = absl::Now();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(TrySubmit(kAlice, "demo.steps").ok()) << i;
  std::string retry_after;
  grpc::Status over;
  int extra = 0;
  while ((over = TrySubmit(kAlice, "demo.steps", "", &retry_after)).ok() && extra < 50) ++extra;
  EXPECT_LE(extra, 1 + static_cast<int>(absl::ToDoubleSeconds(absl::Now() - start) * 5))
      << "accepted beyond the pace";
  EXPECT_EQ(over.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.error_message().find("--max_submits_per_second"), std::string::npos)
      << over.error_message();
  EXPECT_NE(over.error_message().find("\"alice\""), std::string::npos) << over.error_message();
  EXPECT_EQ(retry_after, "1");
  EXPECT_TRUE(TrySubmit(kBob, "demo.steps").ok()) << "another token has its own pace";
  std::this_thread::sleep_for(std::chrono::milliseconds(450));
  EXPECT_TRUE(TrySubmit(kAlice, "demo.steps").ok()) << "a fifth of a second buys one";
}

TEST_P(AuthLimitsTest, LabelsUpToTheLimitPassOneMoreIsRefusedNamingIt) {
  auto submit = [&](int labels) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::SubmitRequest request;
    request.set_type("demo.steps");
    for (int i = 0; i < labels; ++i) (*request.mutable_labels())[absl::StrCat("k", i)] = "v";
    Job job;
    return Jobs(&kBob)->Submit(&ctx, request, &job);
  };
  EXPECT_TRUE(submit(2).ok());
  grpc::Status over = submit(3);
  EXPECT_EQ(over.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(over.error_message().find("the limit is 2 (--max_labels)"), std::string::npos)
      << over.error_message();
}

TEST_P(AuthLimitsTest, ATenantsQueueIsCappedOthersAreNot) {
  Job first;
  ASSERT_TRUE(TrySubmit(kAlice, "ext", "first", nullptr, &first).ok());
  for (int i = 1; i < 8; ++i) {
    if (i == 5) std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the pace
    ASSERT_TRUE(TrySubmit(kAlice, "ext").ok()) << i;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  grpc::Status full = TrySubmit(kAlice, "ext");
  EXPECT_EQ(full.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("tenant \"acme\" has 8 queued jobs"), std::string::npos)
      << full.error_message();
  EXPECT_NE(full.error_message().find("--max_queued_per_tenant"), std::string::npos);
  Job again;
  EXPECT_TRUE(TrySubmit(kAlice, "ext", "first", nullptr, &again).ok()) << "a retry of one in";
  EXPECT_EQ(again.id(), first.id());
  EXPECT_TRUE(TrySubmit(kBob, "ext").ok()) << "another tenant's queue";
  // Once one leaves the queue, there is room again.
  {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::CancelJobRequest request;
    request.set_job_id(first.id());
    Job cancelled;
    ASSERT_TRUE(Jobs(&kAlice)->CancelJob(&ctx, request, &cancelled).ok());
  }
  EXPECT_TRUE(TrySubmit(kAlice, "ext").ok());
}

// Reads a log file: one JSON object per line.
std::vector<google::protobuf::Struct> ReadJsonLines(const std::string& path, std::string* text) {
  std::ifstream in(path);
  std::vector<google::protobuf::Struct> lines;
  std::string line;
  while (std::getline(in, line)) {
    absl::StrAppend(text, line, "\n");
    if (line.empty() || line[0] != '{') continue;  // the start and stop notices
    google::protobuf::Struct parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
    lines.push_back(std::move(parsed));
  }
  return lines;
}
std::string Field(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end()) return "";
  if (it->second.has_number_value()) return absl::StrCat(it->second.number_value());
  return it->second.string_value();
}

TEST(AuthLogTest, ALinePerRequestAndStateChangeWithTenantNeverATokenOrParams) {
  testing::TempDir dir;
  std::ofstream(dir.sub("tokens.json")) << TokenFile({kAlice});
  const std::string log = dir.sub("server.log"), gateway_log = dir.sub("gateway.log");
  auto server = testing::SpawnListening(
      {"/bin/sh", "-c",
       absl::StrCat("exec ", BinaryPath("server/jobstream-server"),
                    " --listen=127.0.0.1:0 --data_dir=", dir.sub("data"), " --auth_tokens=",
                    dir.sub("tokens.json"), " --log_format=json 2>", log)});
  auto gateway = testing::SpawnListening(
      {"/bin/sh", "-c",
       absl::StrCat("exec ", BinaryPath("gateway/jobstream-gateway"),
                    " --listen=127.0.0.1:0 --server=", server.address, " --log_format=json 2>",
                    gateway_log)});
  ChannelOptions options;
  options.token = kAlice.secret;
  JobClient client(*JobClient::Connect(server.address, options));
  v1::SubmitRequest request;
  request.set_type("demo.steps");
  (*request.mutable_params()->mutable_fields())["steps"]
      .mutable_list_value()->add_values()->set_string_value("PARAM-SECRET-42");
  (*request.mutable_params()->mutable_fields())["step_ms"].set_number_value(0);
  (*request.mutable_params()->mutable_fields())["ticks"].set_number_value(0);
  auto job = client.Submit(request);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(testing::FollowJob(client, job->id()).back().type(), v1::JobEvent::SUCCEEDED);
  JobClient stranger(JobClient::Connect(server.address));
  EXPECT_FALSE(stranger.GetStatus(job->id()).ok());
  auto [code, out] = RunCommand(absl::StrCat("curl -s -H 'Authorization: Bearer ", kAlice.secret,
                                             "' 'http://", gateway.address, "/v1/jobs/", job->id(),
                                             "'"));
  EXPECT_NE(out.find(job->id()), std::string::npos) << out;
  // A secret put in the query (where it does not belong) is refused, and logged nowhere.
  std::tie(code, out) = RunCommand(absl::StrCat("curl -s 'http://", gateway.address, "/v1/jobs/",
                                                job->id(), "?token=", kAlice.secret, "'"));
  EXPECT_NE(out.find("unknown query parameter \\\"token\\\""), std::string::npos) << out;
  EXPECT_EQ(out.find(kAlice.secret), std::string::npos) << out;
  testing::StopProcess(gateway.pid, SIGTERM);
  testing::StopProcess(server.pid, SIGTERM);

  std::string text;
  std::vector<google::protobuf::Struct> lines = ReadJsonLines(log, &text);
  EXPECT_EQ(text.find(kAlice.secret), std::string::npos) << text;
  EXPECT_EQ(text.find("PARAM-SECRET-42"), std::string::npos) << text;
  bool submit = false, refused = false, via_gateway = false;
  std::vector<std::string> changes;
  for (const auto& line : lines) {
    if (Field(line, "kind") == "rpc" && Field(line, "method") == "Submit") {
      submit = true;
      EXPECT_EQ(Field(line, "tenant"), "acme");
      EXPECT_EQ(Field(line, "token"), "alice");
      EXPECT_EQ(Field(line, "job_id"), job->id());
      EXPECT_EQ(Field(line, "status"), "OK");
      EXPECT_TRUE(line.fields().at("ms").has_number_value());
    }
    if (Field(line, "kind") == "rpc" && Field(line, "status") == "UNAUTHENTICATED") {
      refused = true;
      EXPECT_EQ(Field(line, "job_id"), job->id());
      EXPECT_EQ(Field(line, "token"), "");
    }
    if (Field(line, "kind") == "rpc" && Field(line, "method") == "GetStatus" &&
        Field(line, "status") == "OK") {
      via_gateway = true;
    }
    if (Field(line, "kind") == "job" && Field(line, "job_id") == job->id()) {
      EXPECT_EQ(Field(line, "tenant"), "acme");
      EXPECT_EQ(Field(line, "trace_id"), job->trace().trace_id()) << "the job's trace, to find";
      changes.push_back(Field(line, "event"));
    }
  }
  EXPECT_TRUE(submit && refused && via_gateway) << text;
  EXPECT_EQ(changes, (std::vector<std::string>{"CREATED", "STARTED", "SUCCEEDED"})) << text;

  std::string gateway_text;
  lines = ReadJsonLines(gateway_log, &gateway_text);
  EXPECT_EQ(gateway_text.find(kAlice.secret), std::string::npos) << gateway_text;
  ASSERT_EQ(lines.size(), 2u) << gateway_text;
  EXPECT_EQ(Field(lines[0], "kind"), "http");
  EXPECT_EQ(Field(lines[0], "method"), "GET");
  EXPECT_EQ(Field(lines[0], "path"), "/v1/jobs/" + job->id());
  EXPECT_EQ(Field(lines[0], "status"), "200");
  EXPECT_EQ(Field(lines[0], "auth"), "header");
  EXPECT_EQ(Field(lines[1], "path"), "/v1/jobs/" + job->id()) << "the path, not the query";
  EXPECT_EQ(Field(lines[1], "status"), "400");
}

TEST(AuthStartTest, ABadTokenFileIsRefusedAtStartNamingTheProblem) {
  testing::TempDir dir;
  const std::string server = BinaryPath("server/jobstream-server");
  auto start = [&](const std::string& json) {
    std::ofstream(dir.sub("tokens.json"), std::ios::trunc) << json;
    return RunCommand(absl::StrCat(server, " --listen=127.0.0.1:0 --data_dir=", dir.sub("d"),
                                   " --auth_tokens=", dir.sub("tokens.json"), " 2>&1"));
  };
  auto [code, out] = start(R"({"tokens": [{"sha256": "abc", "name": "x", "tenant": "t",
                                            "roles": ["read"]}]})");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("tokens[0].sha256"), std::string::npos) << out;
  std::tie(code, out) = start(absl::StrCat(R"({"tokens": [)", Entry(kAlice), ",", Entry(kAlice),
                                           "]}"));
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("repeats"), std::string::npos) << out;
  std::tie(code, out) = start(R"({"tokens": [{"sha256": ")" + std::string(64, 'a') +
                              R"(", "name": "x", "tenant": "t", "roles": ["root"]}]})");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("\"root\""), std::string::npos) << out;
  std::tie(code, out) = start(R"({"tokenz": []})");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("tokenz"), std::string::npos) << out;
  std::tie(code, out) = RunCommand(absl::StrCat(server, " --listen=127.0.0.1:0 --data_dir=",
                                                dir.sub("d"), " --auth_tokens=",
                                                dir.sub("missing.json"), " 2>&1"));
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("missing.json"), std::string::npos) << out;
}

TEST(AuthOpenTest, AServerWithoutTokensSaysSoAndWhoAmIAgrees) {
  testing::TempDir dir;
  ServerProcess server(dir.sub("data"));
  JobClient client(JobClient::Connect(server.address()));
  auto identity = client.WhoAmI();
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_FALSE(identity->auth_required());
  EXPECT_EQ(identity->roles_size(), 4);
}

}  // namespace
}  // namespace jobstream
