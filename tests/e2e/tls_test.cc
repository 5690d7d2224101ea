// TLS on the real binaries, with a CA and certificates made by openssl at test time (no key
// is committed): a client that trusts the CA works, a plaintext client or one trusting
// another CA fails cleanly, client certificates (mTLS) are required when asked for, the
// CLI, `jobstream work` and the gateway speak TLS upstream, and a server refuses to serve
// an open, non-loopback address by accident.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "gtest/gtest.h"
#include "jobstream/v1/job_states.h"
#include "tests/support/job_helpers.h"
#include "tests/support/process.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

namespace jobstream {
namespace {

using client::ChannelOptions;
using client::JobClient;
using testing::RunCommand;
using testing::ServerProcess;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A CA for servers, one for clients, and an unrelated one. P-256 keys: an RSA key
    // took a hundred times the CPU to make, five of them per test, in both suites.
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    Openssl("req -x509 " + key + " -keyout ca.key -out ca.pem -days 1 "
            "-subj /CN=jobstream-test-ca");
    Openssl("req -x509 " + key + " -keyout other.key -out other.pem -days 1 "
            "-subj /CN=someone-else");
    Openssl("req -x509 " + key + " -keyout clients.key -out clients.pem -days 1 "
            "-subj /CN=jobstream-test-client-ca");
    std::ofstream(dir_.sub("server.ext")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    Openssl("req " + key + " -keyout server.key -out server.csr -subj /CN=localhost");
    Openssl("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
            "-out server.pem -extfile server.ext");
    Openssl("req " + key + " -keyout worker.key -out worker.csr -subj /CN=worker-1");
    Openssl("x509 -req -in worker.csr -CA clients.pem -CAkey clients.key -CAcreateserial "
            "-days 1 -out worker.pem");
  }
  void Openssl(const std::string& args) {
    auto [code, out] = RunCommand(absl::StrCat("cd ", dir_.path(), " && openssl ", args, " 2>&1"));
    ASSERT_EQ(code, 0) << out;
  }
  std::string Pem(const std::string& name) { return dir_.sub(name); }
  std::unique_ptr<ServerProcess> StartTls(bool mtls) {
    std::vector<std::string> flags = {"--tls_cert=" + Pem("server.pem"),
                                      "--tls_key=" + Pem("server.key")};
    if (mtls) flags.push_back("--tls_client_ca=" + Pem("clients.pem"));
    return std::make_unique<ServerProcess>(dir_.sub("data"), flags);
  }
  // A Submit through a channel made with `options`, with a short deadline.
  grpc::Status TrySubmit(const std::string& address, const ChannelOptions& options) {
    auto channel = JobClient::Connect(address, options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    auto stub = v1::JobService::NewStub(*channel);
    grpc::ClientContext ctx;
    // Refusals come at once (UNAVAILABLE, fail-fast); the deadline only bounds a hang, and
    // is long because a TLS handshake under ASan beside other tests took over 3 s.
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::SubmitRequest request;
    request.set_type("demo.steps");
    v1::Job job;
    return stub->Submit(&ctx, request, &job);
  }
  testing::TempDir dir_;
};

TEST_F(TlsTest, ClientsThatTrustTheCaWorkOthersFailCleanly) {
  auto server = StartTls(/*mtls=*/false);
  ChannelOptions trusting;
  trusting.ca_file = Pem("ca.pem");
  grpc::Status trusted = TrySubmit(server->address(), trusting);
  EXPECT_TRUE(trusted.ok()) << trusted.error_message();
  // Plaintext to a TLS port, and TLS trusting another CA: refused, no hang, no crash.
  EXPECT_EQ(TrySubmit(server->address(), ChannelOptions()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  ChannelOptions wrong;
  wrong.ca_file = Pem("other.pem");
  EXPECT_EQ(TrySubmit(server->address(), wrong).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The CLI follows a job over TLS.
  const std::string cli = absl::StrCat(testing::BinaryPath("client/jobstream"),
                                       " --server=", server->address());
  auto [code, out] = RunCommand(absl::StrCat(
      cli, " --server_ca=", Pem("ca.pem"),
      " submit demo.steps --params='{\"steps\":[\"a\"],\"step_ms\":0}' --watch --json"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\"SUCCEEDED\""), std::string::npos) << out;
  std::tie(code, out) = RunCommand(absl::StrCat(cli, " list 2>&1"));
  EXPECT_EQ(code, 3) << out;  // a connection error, not a crash
  std::tie(code, out) = RunCommand(absl::StrCat(cli, " --server_ca=/no/such.pem list 2>&1"));
  EXPECT_EQ(code, 3);
  EXPECT_NE(out.find("--server_ca: cannot read /no/such.pem"), std::string::npos) << out;
  // The gateway speaks TLS upstream.
  auto gateway = testing::SpawnListening({testing::BinaryPath("gateway/jobstream-gateway"),
                                          "--listen=127.0.0.1:0", "--server=" + server->address(),
                                          "--server_ca=" + Pem("ca.pem")});
  std::tie(code, out) = RunCommand(absl::StrCat("curl -s http://", gateway.address, "/healthz"));
  EXPECT_NE(out.find("SERVING"), std::string::npos) << out;
  testing::StopProcess(gateway.pid, SIGTERM);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheClientCa) {
  auto server = StartTls(/*mtls=*/true);
  ChannelOptions with_cert;
  with_cert.ca_file = Pem("ca.pem");
  with_cert.cert_file = Pem("worker.pem");
  with_cert.key_file = Pem("worker.key");
  grpc::Status certified = TrySubmit(server->address(), with_cert);
  EXPECT_TRUE(certified.ok()) << certified.error_message();
  ChannelOptions without_cert;
  without_cert.ca_file = Pem("ca.pem");
  EXPECT_EQ(TrySubmit(server->address(), without_cert).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  ChannelOptions wrong_cert = with_cert;  // signed by the server CA, not the clients'
  wrong_cert.cert_file = Pem("server.pem");
  wrong_cert.key_file = Pem("server.key");
  EXPECT_EQ(TrySubmit(server->address(), wrong_cert).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  ChannelOptions half = with_cert;
  half.key_file.clear();
  EXPECT_FALSE(JobClient::Connect(server->address(), half).ok());
}

TEST_F(TlsTest, AWorkerWithItsClientCertificateRunsJobsOverMutualTls) {
  std::ofstream(dir_.sub("config.json"))
      << R"({"types": [{"name": "remote", "external": {"leaseDuration": "30s"}}]})";
  auto server = std::make_unique<ServerProcess>(
      dir_.sub("data"), std::vector<std::string>{
                            "--tls_cert=" + Pem("server.pem"), "--tls_key=" + Pem("server.key"),
                            "--tls_client_ca=" + Pem("clients.pem"),
                            "--config=" + dir_.sub("config.json")});
  const std::string script =
      testing::WriteScript(dir_.sub("work.sh"), "echo '{\"result\": \"over mTLS\"}'\n");
  const pid_t worker = testing::Spawn(
      {testing::BinaryPath("client/jobstream"), "--server=" + server->address(),
       "--server_ca=" + Pem("ca.pem"), "--client_cert=" + Pem("worker.pem"),
       "--client_key=" + Pem("worker.key"), "work", "--type=remote", "--", script},
      dir_.sub("worker.log"));
  ChannelOptions options;
  options.ca_file = Pem("ca.pem");
  options.cert_file = Pem("worker.pem");
  options.key_file = Pem("worker.key");
  JobClient client(*JobClient::Connect(server->address(), options));
  v1::SubmitRequest request;
  request.set_type("remote");
  auto job = client.Submit(request);
  ASSERT_TRUE(job.ok()) << job.status();
  v1::Job end = testing::FollowJob(client, job->id()).back().status();
  testing::StopProcess(worker, SIGTERM);
  EXPECT_EQ(end.state(), v1::Job::SUCCEEDED);
  EXPECT_EQ(end.result().string_value(), "over mTLS");
}

TEST_F(TlsTest, TheGatewayServesHttpsSseAndWebSocketsAndAsksForClientCertificates) {
  auto server = StartTls(/*mtls=*/false);
  auto gateway = testing::SpawnListening(
      {testing::BinaryPath("gateway/jobstream-gateway"), "--listen=127.0.0.1:0",
       "--server=" + server->address(), "--server_ca=" + Pem("ca.pem"),
       "--tls_cert=" + Pem("server.pem"), "--tls_key=" + Pem("server.key")});
  const std::string https = "https://" + gateway.address;
  const std::string curl = "curl -sS --max-time 20 --cacert " + Pem("ca.pem") + " ";
  // A job submitted and followed over HTTPS, its SSE stream to the end.
  auto [code, out] = RunCommand(absl::StrCat(
      curl, "-H 'Content-Type: application/json' -d '{\"type\": \"demo.steps\", ",
      "\"params\": {\"ticks\": 2, \"step_ms\": 50}}' ", https, "/v1/jobs"));
  ASSERT_EQ(code, 0) << out;
  const size_t at = out.find("\"id\":\"") + 6;
  const std::string id = out.substr(at, out.find('"', at) - at);
  std::tie(code, out) = RunCommand(absl::StrCat(curl, "-N ", https, "/v1/jobs/", id, "/events"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("event: succeeded"), std::string::npos) << out;
  // A WebSocket over TLS: the upgrade is answered (curl only checks the handshake).
  std::tie(code, out) = RunCommand(absl::StrCat(
      curl, "-i -o - -H 'Connection: Upgrade' -H 'Upgrade: websocket' ",
      "-H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' ",
      "--max-time 2 ", https, "/v1/jobs/", id, "/ws 2>/dev/null | head -1"));
  EXPECT_NE(out.find("101"), std::string::npos) << out;
  // Plain HTTP to the TLS port, and a client that trusts another CA, fail cleanly.
  std::tie(code, out) = RunCommand(absl::StrCat("curl -sS --max-time 5 http://", gateway.address,
                                                "/healthz 2>&1"));
  EXPECT_NE(code, 0) << out;
  std::tie(code, out) = RunCommand(absl::StrCat("curl -sS --max-time 5 --cacert ", Pem("other.pem"),
                                                " ", https, "/healthz 2>&1"));
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("certificate"), std::string::npos) << out;
  // The gateway is still serving after all that.
  std::tie(code, out) = RunCommand(absl::StrCat(curl, https, "/healthz"));
  EXPECT_EQ(out, R"({"status":"SERVING"})");
  testing::StopProcess(gateway.pid, SIGTERM);

  // With --tls_client_ca, only a client with a certificate it signed gets in.
  auto mtls = testing::SpawnListening(
      {testing::BinaryPath("gateway/jobstream-gateway"), "--listen=127.0.0.1:0",
       "--server=" + server->address(), "--server_ca=" + Pem("ca.pem"),
       "--tls_cert=" + Pem("server.pem"), "--tls_key=" + Pem("server.key"),
       "--tls_client_ca=" + Pem("clients.pem")});
  const std::string health = absl::StrCat(" https://", mtls.address, "/healthz 2>&1");
  std::tie(code, out) = RunCommand(curl + health);
  EXPECT_NE(code, 0) << out;
  std::tie(code, out) = RunCommand(absl::StrCat(curl, "--cert ", Pem("worker.pem"), " --key ",
                                                Pem("worker.key"), health));
  EXPECT_EQ(out, R"({"status":"SERVING"})");
  testing::StopProcess(mtls.pid, SIGTERM);

  // Bad flags are refused at start, naming the file.
  const std::string bin = testing::BinaryPath("gateway/jobstream-gateway");
  std::tie(code, out) = RunCommand(absl::StrCat(bin, " --listen=127.0.0.1:0 --tls_cert=",
                                                Pem("server.pem"), " --tls_key=", Pem("other.key"),
                                                " 2>&1"));
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("--tls_key"), std::string::npos) << out;
  std::tie(code, out) = RunCommand(absl::StrCat(bin, " --listen=127.0.0.1:0 --tls_cert=/nope",
                                                " --tls_key=/nope 2>&1"));
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("/nope"), std::string::npos) << out;
}

TEST_F(TlsTest, BadTlsFlagsAndAnOpenAddressAreRefusedAtStart) {
  const std::string bin = testing::BinaryPath("server/jobstream-server");
  const std::string base = absl::StrCat(bin, " --data_dir=", dir_.sub("data"));
  for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
           {"--listen=0.0.0.0:0", "not a loopback address"},
           {"--listen=127.0.0.1:0 --tls_cert=" + Pem("server.pem"), "go together"},
           {"--listen=127.0.0.1:0 --tls_cert=/nope --tls_key=/nope", "--tls_cert: cannot read"},
           {"--listen=127.0.0.1:0 --tls_cert=" + Pem("server.ext") + " --tls_key=" +
                Pem("server.key"),
            "holds no PEM data"},
           {"--listen=127.0.0.1:0 --tls_client_ca=" + Pem("clients.pem"), "needs --tls_cert"},
           {"--listen=127.0.0.1:0 --tls_cert=" + Pem("server.pem") + " --tls_key=" +
                Pem("other.key"),
            "matching pair"}}) {
    auto [code, out] = RunCommand(absl::StrCat(base, " ", flags, " 2>&1"));
    EXPECT_EQ(code, 2) << flags << ": " << out;
    EXPECT_NE(out.find(message), std::string::npos) << flags << ": " << out;
  }
  // Said plainly, it serves.
  ServerProcess open(dir_.sub("data"), {"--listen=0.0.0.0:0", "--insecure_allow_open"});
  const std::string port = open.address().substr(open.address().rfind(':') + 1);
  JobClient client(JobClient::Connect("127.0.0.1:" + port));
  EXPECT_TRUE(client.List({}).ok());
}

}  // namespace
}  // namespace jobstream
