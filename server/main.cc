// jobstream-server: opens the store, recovers, starts the runner, serves gRPC, and on
// SIGTERM/SIGINT shuts down in order: streams end UNAVAILABLE, in-flight calls finish,
// running handlers stop (their jobs are requeued), the committer drains, RocksDB closes.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "client/job_client.h"
#include "server/auth/tokens.h"
#include "server/backend.h"
#include "server/jobs/job_types.h"
#include "server/rpc/schedule_service.h"
#include "server/schedules/scheduler.h"
#include "server/jobs/runner.h"
#include "server/metrics/job_stats.h"
#include "server/metrics/metrics_http.h"
#include "server/metrics/server_metrics.h"
#include "server/metrics/store_gauges.h"
#include "server/tracing/span_exporter.h"
#include "server/tracing/trace_context.h"
#include "server/rpc/health_service.h"
#include "server/rpc/job_service.h"
#include "server/rpc/request_log.h"
#include "common/log.h"
#include "server/rpc/worker_service.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "HOST:PORT to serve on; port 0 picks one");
ABSL_FLAG(std::string, data_dir, "./jobstream-data", "RocksDB directory (created if missing)");
ABSL_FLAG(std::string, store, "",
          "where jobs live: empty for RocksDB in --data_dir, or a PostgreSQL URL "
          "(postgresql://user@host:port/db?…) shared by any number of servers");
ABSL_FLAG(int, pg_pool_size, 8, "connections to PostgreSQL for calls (1..1000)");
ABSL_FLAG(std::string, server_id, "",
          "this server among those sharing a PostgreSQL store (default: host name and pid); "
          "names the leases of its in-server runs");
ABSL_FLAG(absl::Duration, run_lease, absl::Seconds(30),
          "PostgreSQL store: how long after this server's last renewal its in-server runs "
          "are taken over by another server if it dies");
ABSL_FLAG(std::string, config, "", "ServerConfig JSON file declaring job types");
ABSL_FLAG(absl::Duration, retention, absl::Hours(168),
          "how long finished jobs are kept (tombstones as long again)");
ABSL_FLAG(absl::Duration, sweep_interval, absl::Minutes(1), "how often retention runs");
ABSL_FLAG(int, runner_threads, 16, "jobs run at once by in-server handlers");
ABSL_FLAG(int64_t, max_params_bytes, 1 << 20, "largest params accepted by Submit");
ABSL_FLAG(int, max_labels, 32, "labels one job may carry (1..256)");
ABSL_FLAG(int64_t, max_queued_per_tenant, 1'000'000,
          "queued jobs one tenant may have (the whole server's, without tokens)");
ABSL_FLAG(double, max_submits_per_second, 1000,
          "Submits a second per token, a second's worth at once (0: no limit; tokens only)");
ABSL_FLAG(int64_t, max_message_bytes, 4 << 20,
          "largest gRPC message the server reads (gRPC answers RESOURCE_EXHAUSTED past it)");
ABSL_FLAG(int64_t, min_free_disk_bytes, int64_t{256} << 20,
          "below this much free space on the data dir's disk, new jobs and artifacts are "
          "refused (jobs already in keep running); 0: never");
ABSL_FLAG(int64_t, max_watchers, 100000, "open watch streams accepted");
ABSL_FLAG(int64_t, max_watchers_per_job, 10000, "open watch streams of one live job");
ABSL_FLAG(int64_t, watch_queue_limit, 256,
          "state events queued per watcher before it is cut off RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_artifact_bytes, int64_t{1} << 30, "largest artifact a job may attach");
ABSL_FLAG(int64_t, max_job_artifact_bytes, int64_t{4} << 30,
          "most artifact bytes one job may hold in all");
ABSL_FLAG(int, max_artifacts_per_job, 100, "most artifacts one job may hold");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve gRPC over TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA: require every client to present a certificate it signed (mTLS)");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT serving GET /metrics (Prometheus text; port 0 picks one), or \"off\". "
          "Empty: 127.0.0.1:9464, or none (with a warning) if that is taken");
ABSL_FLAG(bool, metrics_tenants, false,
          "also count jobs submitted, succeeded, failed and cancelled by tenant (one series "
          "per tenant of --auth_tokens)");
ABSL_FLAG(absl::Duration, stats_interval, absl::Seconds(10),
          "how often GetJobStats (the page's charts) samples job counts, 1s..60s; an hour of "
          "samples is kept");
ABSL_FLAG(std::string, otlp_endpoint, "",
          "HOST:PORT of an OpenTelemetry collector (OTLP/gRPC, plaintext): each job's spans "
          "go there, in batches; empty: none");
ABSL_FLAG(double, otlp_sample_ratio, 1.0,
          "the share of jobs that start a trace of their own whose spans are exported, 0..1 "
          "(head sampling by trace id); a job submitted with a traceparent follows its flag");
ABSL_FLAG(bool, log, true, "log a line per request and per job state change (stderr)");
ABSL_FLAG(std::string, log_format, "text", "text (key=value) or json (an object per line)");
ABSL_FLAG(std::string, auth_tokens, "",
          "AuthConfig JSON file of bearer tokens (their sha256, name, tenant, roles); "
          "re-read on SIGHUP. Without it, anyone who reaches the port may do anything");
ABSL_FLAG(bool, insecure_allow_open, false,
          "serve on an address other than loopback with no access control");
ABSL_FLAG(std::vector<std::string>, webhook_allow, {},
          "hosts (host or host:port) job webhooks may call; none: webhooks are refused");
ABSL_FLAG(std::string, webhook_secret_file, "",
          "file holding the key of the webhook signature (HMAC-SHA256); needed with "
          "--webhook_allow");
ABSL_FLAG(int, webhook_max_attempts, 10, "attempts at each webhook delivery");
ABSL_FLAG(absl::Duration, webhook_retry_backoff, absl::Seconds(1),
          "first delay after a failed webhook delivery; doubles per attempt, up to 10m");
ABSL_FLAG(absl::Duration, webhook_timeout, absl::Seconds(10),
          "time for a webhook attempt; on PostgreSQL, a delivery whose server dies mid-attempt "
          "is sent again by another after twice this");
ABSL_FLAG(std::string, webhook_ca_file, "", "extra CA certificate(s) for https webhooks");
ABSL_FLAG(absl::Duration, retry_backoff, absl::Seconds(1),
          "first retry delay of types whose config sets none; doubles per attempt with jitter");

namespace {

int Fail(const std::string& message) {
  std::cerr << "jobstream-server: " << message << "\n";
  return 2;
}

// HOST:PORT with a port in 0..65535; returns the host.
bool ParseListen(const std::string& listen, std::string* host) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return false;
  }
  *host = listen.substr(0, colon);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by sigwait at the end; blocked first thing, before any library can
  // start a thread that would otherwise take a SIGTERM with its default action.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // re-reads --auth_tokens
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  absl::SetProgramUsageMessage(
      "jobstream-server --listen=127.0.0.1:50051 --data_dir=./jobstream-data [--config=FILE]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  // Artifact bytes pass through in buffers of 256 KiB to 1 MiB on many threads. Served
  // from mmap (and unmapped when freed) they cannot pile up in per-thread heaps, which
  // glibc's sliding threshold would otherwise let them do: memory stays flat however
  // large the files.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles, through a
  // global graph: a real cost on every lock. Tests keep it on; the server does not.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (rest.size() > 1) return Fail(absl::StrCat("unexpected argument: ", rest[1]));

  std::string host;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (!ParseListen(listen, &host)) {
    return Fail("--listen must be HOST:PORT with a port from 0 to 65535, not \"" + listen + "\"");
  }
  if (absl::GetFlag(FLAGS_runner_threads) < 1 || absl::GetFlag(FLAGS_runner_threads) > 1024) {
    return Fail("--runner_threads must be 1..1024");
  }
  const int64_t max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message < (2 << 20) || max_message > (64 << 20)) {
    return Fail("--max_message_bytes must be 2 MiB..64 MiB (2097152..67108864)");
  }
  if (absl::GetFlag(FLAGS_max_params_bytes) < 1 ||
      absl::GetFlag(FLAGS_max_params_bytes) > max_message - (1 << 20)) {
    return Fail(absl::StrCat("--max_params_bytes must be 1..", max_message - (1 << 20),
                             " (1 MiB under --max_message_bytes, for the rest of a request)"));
  }
  if (absl::GetFlag(FLAGS_max_watchers) < 1 || absl::GetFlag(FLAGS_watch_queue_limit) < 1 ||
      absl::GetFlag(FLAGS_max_watchers_per_job) < 1) {
    return Fail("--max_watchers, --max_watchers_per_job and --watch_queue_limit must be at "
                "least 1");
  }
  if (absl::GetFlag(FLAGS_max_labels) < 0 || absl::GetFlag(FLAGS_max_labels) > 256) {
    return Fail("--max_labels must be 0..256");
  }
  if (absl::GetFlag(FLAGS_min_free_disk_bytes) < 0) {
    return Fail("--min_free_disk_bytes must be >= 0");
  }
  if (absl::GetFlag(FLAGS_max_queued_per_tenant) < 1 ||
      !(absl::GetFlag(FLAGS_max_submits_per_second) >= 0)) {
    return Fail("--max_queued_per_tenant must be at least 1, --max_submits_per_second >= 0");
  }
  if (absl::GetFlag(FLAGS_retention) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_sweep_interval) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_retry_backoff) < absl::ZeroDuration()) {
    return Fail("--retention and --sweep_interval must be positive, --retry_backoff >= 0");
  }
  if (absl::GetFlag(FLAGS_stats_interval) < absl::Seconds(1) ||
      absl::GetFlag(FLAGS_stats_interval) > absl::Seconds(60)) {
    return Fail("--stats_interval must be 1s..60s");
  }
  const std::string store_url = absl::GetFlag(FLAGS_store);
  const bool postgres = !store_url.empty();
  if (postgres && store_url.rfind("postgresql://", 0) != 0 &&
      store_url.rfind("postgres://", 0) != 0) {
    return Fail("--store must be empty (RocksDB in --data_dir) or a postgresql:// URL");
  }
  if (absl::GetFlag(FLAGS_pg_pool_size) < 1 || absl::GetFlag(FLAGS_pg_pool_size) > 1000) {
    return Fail("--pg_pool_size must be 1..1000");
  }
  if (absl::GetFlag(FLAGS_run_lease) < absl::Seconds(1)) {
    return Fail("--run_lease must be at least 1s");
  }
  std::string server_id = absl::GetFlag(FLAGS_server_id);
  if (server_id.size() > 128) return Fail("--server_id must be at most 128 bytes");
  if (server_id.empty()) {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    server_id = absl::StrCat(name, ":", getpid());
  }

  if (absl::GetFlag(FLAGS_max_artifact_bytes) < 0 ||
      absl::GetFlag(FLAGS_max_job_artifact_bytes) < 0 ||
      absl::GetFlag(FLAGS_max_artifacts_per_job) < 0 ||
      absl::GetFlag(FLAGS_max_artifacts_per_job) > 10000) {
    return Fail("--max_artifact_bytes and --max_job_artifact_bytes must be >= 0, "
                "--max_artifacts_per_job 0..10000");
  }

  auto webhook_policy =
      jobstream::webhooks::WebhookPolicy::Parse(absl::GetFlag(FLAGS_webhook_allow));
  if (!webhook_policy.ok()) return Fail(std::string(webhook_policy.status().message()));
  jobstream::webhooks::WebhookOptions webhook_options;
  if (webhook_policy->enabled()) {
    const std::string secret_file = absl::GetFlag(FLAGS_webhook_secret_file);
    if (secret_file.empty()) {
      return Fail("--webhook_allow needs --webhook_secret_file: every delivery is signed");
    }
    std::ifstream in(secret_file, std::ios::binary);
    std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (!in.good() && !in.eof()) return Fail("cannot read --webhook_secret_file " + secret_file);
    if (secret.size() < 16) {
      return Fail("--webhook_secret_file " + secret_file +
                  " must hold a secret of at least 16 bytes");
    }
    webhook_options.secret = std::move(secret);
  }
  webhook_options.max_attempts = absl::GetFlag(FLAGS_webhook_max_attempts);
  webhook_options.initial_backoff = absl::GetFlag(FLAGS_webhook_retry_backoff);
  webhook_options.timeout = absl::GetFlag(FLAGS_webhook_timeout);
  webhook_options.ca_file = absl::GetFlag(FLAGS_webhook_ca_file);
  if (webhook_options.max_attempts < 1 || webhook_options.max_attempts > 100 ||
      webhook_options.initial_backoff <= absl::ZeroDuration() ||
      webhook_options.timeout <= absl::ZeroDuration()) {
    return Fail("--webhook_max_attempts must be 1..100, --webhook_retry_backoff and "
                "--webhook_timeout positive");
  }

  // Who may do what: with no tokens, anyone who reaches the port may do anything, so only
  // loopback is served unless the operator says otherwise.
  auto authenticator = std::make_unique<jobstream::auth::Authenticator>();
  if (const std::string tokens = absl::GetFlag(FLAGS_auth_tokens); !tokens.empty()) {
    auto loaded = jobstream::auth::Authenticator::Load(tokens);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    authenticator = *std::move(loaded);
  }
  const bool loopback = host == "127.0.0.1" || host == "localhost" || host == "[::1]" ||
                        host.rfind("127.", 0) == 0;
  if (!loopback && !authenticator->enabled() && !absl::GetFlag(FLAGS_insecure_allow_open)) {
    return Fail("--listen=" + listen + " is not a loopback address, and without --auth_tokens "
                "anyone who reaches it could run, read and delete any job. Give it "
                "--auth_tokens, or add --insecure_allow_open if that is what you want");
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  const std::string tls_cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string tls_key = absl::GetFlag(FLAGS_tls_key);
  const std::string tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (auto s = jobstream::client::CheckServingTlsFlags(tls_cert, tls_key, tls_client_ca);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (!tls_cert.empty()) {
    grpc::SslServerCredentialsOptions tls(
        tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    auto cert = jobstream::client::ReadPemFile(tls_cert, "--tls_cert");
    auto key = jobstream::client::ReadPemFile(tls_key, "--tls_key");
    if (!cert.ok()) return Fail(std::string(cert.status().message()));
    if (!key.ok()) return Fail(std::string(key.status().message()));
    tls.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
    if (!tls_client_ca.empty()) {
      auto ca = jobstream::client::ReadPemFile(tls_client_ca, "--tls_client_ca");
      if (!ca.ok()) return Fail(std::string(ca.status().message()));
      tls.pem_root_certs = *std::move(ca);
    }
    credentials = grpc::SslServerCredentials(tls);
  }

  // Metrics: an address given must be served; the default is served if it is free.
  std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  const bool metrics_default = metrics_listen.empty();
  if (metrics_default) metrics_listen = "127.0.0.1:9464";
  std::string metrics_host;
  if (metrics_listen != "off" && !ParseListen(metrics_listen, &metrics_host)) {
    return Fail("--metrics_listen must be HOST:PORT with a port from 0 to 65535, or off, not \"" +
                metrics_listen + "\"");
  }

  const std::string otlp_endpoint = absl::GetFlag(FLAGS_otlp_endpoint);
  if (std::string otlp_host; !otlp_endpoint.empty() && !ParseListen(otlp_endpoint, &otlp_host)) {
    return Fail("--otlp_endpoint must be HOST:PORT, not \"" + otlp_endpoint + "\"");
  }
  const double sample_ratio = absl::GetFlag(FLAGS_otlp_sample_ratio);
  if (!(sample_ratio >= 0 && sample_ratio <= 1)) {  // (NaN too)
    return Fail("--otlp_sample_ratio must be from 0 to 1");
  }
  jobstream::tracing::SetRootSampleRatio(sample_ratio);

  auto log_format = jobstream::logs::ParseFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) return Fail(std::string(log_format.status().message()));

  jobstream::v1::ServerConfig config;
  const std::string config_file = absl::GetFlag(FLAGS_config);
  if (!config_file.empty()) {
    auto read = jobstream::jobs::JobTypes::ReadConfigFile(config_file);
    if (!read.ok()) return Fail(std::string(read.status().message()));
    config = *std::move(read);
  }
  jobstream::jobs::TypeDefaults type_defaults;
  type_defaults.initial_backoff = absl::GetFlag(FLAGS_retry_backoff);
  auto types = jobstream::jobs::JobTypes::FromConfig(config, type_defaults);
  if (!types.ok()) {
    return Fail(absl::StrCat("config file ", config_file, ": ", types.status().message()));
  }

  // A program that closes its stdin early must not take the server down (exec types).
  signal(SIGPIPE, SIG_IGN);

  // From recovery on: its state changes are logged too.
  if (absl::GetFlag(FLAGS_log)) jobstream::logs::Start(*log_format);
  if (absl::GetFlag(FLAGS_metrics_tenants)) jobstream::server_metrics::EnableTenantCounts();
  if (!otlp_endpoint.empty()) {  // before recovery: what it ends is traced too
    jobstream::tracing::ExporterOptions options;
    options.endpoint = otlp_endpoint;
    options.service_instance = server_id;
    jobstream::tracing::StartExporter(options);
  }
  jobstream::watch::WatchOptions watch_options;
  watch_options.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  watch_options.max_watchers_per_job = absl::GetFlag(FLAGS_max_watchers_per_job);
  watch_options.queue_limit = absl::GetFlag(FLAGS_watch_queue_limit);
  jobstream::jobs::Limits limits;
  limits.max_params_bytes = absl::GetFlag(FLAGS_max_params_bytes);
  limits.max_queued_per_tenant = absl::GetFlag(FLAGS_max_queued_per_tenant);
  limits.max_labels = absl::GetFlag(FLAGS_max_labels);

  jobstream::jobs::ArtifactLimits artifact_limits;
  artifact_limits.max_artifact_bytes = absl::GetFlag(FLAGS_max_artifact_bytes);
  artifact_limits.max_job_artifact_bytes = absl::GetFlag(FLAGS_max_job_artifact_bytes);
  artifact_limits.max_artifacts_per_job = absl::GetFlag(FLAGS_max_artifacts_per_job);

  absl::StatusOr<std::unique_ptr<jobstream::server::Backend>> opened;
  if (postgres) {
    jobstream::server::PgOptions options;
    options.url = store_url;
    options.pool_size = absl::GetFlag(FLAGS_pg_pool_size);
    options.watch = watch_options;
    options.manager.limits = limits;
    options.manager.server_id = server_id;
    options.manager.run_lease = absl::GetFlag(FLAGS_run_lease);
    options.manager.retention = absl::GetFlag(FLAGS_retention);
    options.manager.artifacts = artifact_limits;
    options.manager.webhook_policy = &*webhook_policy;
    options.webhooks = {&*webhook_policy, webhook_options};
    opened = jobstream::server::OpenPgBackend(options, &*types);
  } else {
    jobstream::server::RocksOptions options;
    options.data_dir = absl::GetFlag(FLAGS_data_dir);
    options.min_free_disk_bytes = absl::GetFlag(FLAGS_min_free_disk_bytes);
    options.watch = watch_options;
    options.manager.limits = limits;
    options.manager.retention = absl::GetFlag(FLAGS_retention);
    options.manager.artifacts = artifact_limits;
    options.manager.webhook_policy = &*webhook_policy;
    options.webhooks = {&*webhook_policy, webhook_options};
    opened = jobstream::server::OpenRocksBackend(options, &*types);
  }
  if (!opened.ok()) return Fail(std::string(opened.status().message()));
  std::unique_ptr<jobstream::server::Backend> backend = *std::move(opened);
  jobstream::jobs::JobBackend* manager = backend->jobs();
  jobstream::watch::EventHub& hub = *backend->hub();
  if (postgres) {
    std::cerr << "jobstream-server: PostgreSQL store as server \"" << server_id << "\"\n";
  }

  jobstream::jobs::Runner runner(manager, &*types, absl::GetFlag(FLAGS_runner_threads));
  runner.Start();
  jobstream::schedules::ScheduleManager schedule_manager(backend->schedules(), manager,
                                                         backend->reader(), &*types, limits);
  jobstream::schedules::Scheduler scheduler(&schedule_manager,
                                            [&backend] { return backend->LeadsSchedules(); });
  scheduler.Start();

  jobstream::rpc::CallTracker calls;
  std::unique_ptr<jobstream::auth::RateLimiter> submit_rate;
  if (absl::GetFlag(FLAGS_max_submits_per_second) > 0) {
    submit_rate = std::make_unique<jobstream::auth::RateLimiter>(
        absl::GetFlag(FLAGS_max_submits_per_second));
  }
  jobstream::rpc::JobServiceImpl service(manager, &hub, &calls, authenticator.get(),
                                         submit_rate.get());
  auto stats = std::make_unique<jobstream::server_metrics::JobStatsHistory>(
      manager, absl::GetFlag(FLAGS_stats_interval));
  service.set_stats(stats.get());
  jobstream::rpc::WorkerServiceImpl worker_service(manager, &*types, &calls,
                                                  authenticator.get());
  jobstream::rpc::ScheduleServiceImpl schedule_service(&schedule_manager, authenticator.get());
  jobstream::rpc::HealthServiceImpl health_service(
      {"jobstream.v1.JobService", "jobstream.v1.WorkerService", "jobstream.v1.ScheduleService"});
  grpc::EnableDefaultHealthCheckService(false);  // ours has a descriptor for reflection
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (absl::GetFlag(FLAGS_log)) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> logging;
    logging.push_back(std::make_unique<jobstream::rpc::RequestLogFactory>(authenticator.get()));
    builder.experimental().SetInterceptorCreators(std::move(logging));
  }
  int port = 0;
  builder.AddListeningPort(listen, credentials, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message));
  builder.RegisterService(&service);
  builder.RegisterService(&worker_service);
  builder.RegisterService(&schedule_service);
  builder.RegisterService(&health_service);
  // Find dead watchers (and keep idle streams alive through middleboxes).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    scheduler.Stop();
    runner.Stop();
    return Fail("cannot listen on " + listen +
                (tls_cert.empty() ? "" : " (are --tls_cert and --tls_key a matching pair?)"));
  }
  std::vector<std::string> type_names;
  for (const jobstream::jobs::JobType* type : types->All()) type_names.push_back(type->name);
  jobstream::server_metrics::DeclareTypes(type_names);
  jobstream::server_metrics::DeclareServerGauges(manager, &hub);
  backend->DeclareMetrics();
  std::unique_ptr<jobstream::server_metrics::MetricsHttp> metrics_http;
  if (metrics_listen != "off") {
    jobstream::server_metrics::MetricsHttp::Options options;
    options.host = metrics_host;
    options.port = std::stoi(metrics_listen.substr(metrics_listen.rfind(':') + 1));
    options.authenticator = authenticator.get();
    auto started = jobstream::server_metrics::MetricsHttp::Start(
        options, [] { return jobstream::server_metrics::Registry().Render(); });
    if (started.ok()) {
      metrics_http = *std::move(started);
    } else if (metrics_default) {
      std::cerr << "jobstream-server: no metrics: " << started.status().message()
                << " (give --metrics_listen another HOST:PORT, or off)\n";
    } else {
      server->Shutdown(std::chrono::system_clock::now());
      scheduler.Stop();
      runner.Stop();
      return Fail(std::string(started.status().message()));
    }
  }
  std::cout << "listening on " << host << ":" << port << std::endl;
  // A second line for whoever asked for port 0 (tests); nobody need read it.
  if (metrics_http) std::cout << "metrics on " << metrics_host << ":" << metrics_http->port() << std::endl;
  if (metrics_http) {
    std::cerr << "jobstream-server: metrics on http://" << metrics_host << ":"
              << metrics_http->port() << "/metrics"
              << (authenticator->enabled() ? " (a token with the role metrics or read)" : "")
              << "\n";
  }
  std::cerr << "jobstream-server: serving " << (tls_cert.empty() ? "plaintext" : "TLS")
            << (tls_client_ca.empty() ? "" : " with client certificates") << " on " << host << ":"
            << port << "; ";
  if (authenticator->enabled()) {
    std::cerr << authenticator->tokens() << " tokens from " << absl::GetFlag(FLAGS_auth_tokens)
              << " (SIGHUP re-reads it)\n";
  } else {
    std::cerr << "no access control: whoever reaches this port may do anything"
              << (loopback ? " (loopback only)" : " (--insecure_allow_open)") << "\n";
  }

  absl::Notification stop_sweeping;
  std::thread sweeper([&] {
    while (!stop_sweeping.WaitForNotificationWithTimeout(absl::GetFlag(FLAGS_sweep_interval))) {
      if (absl::Status s = manager->Sweep(absl::Now()); !s.ok()) {
        std::cerr << "jobstream-server: retention sweep failed: " << s << "\n";
      }
    }
  });

  int signal = 0;
  for (;;) {
    sigwait(&signals, &signal);
    if (signal != SIGHUP) break;
    if (!authenticator->enabled()) {
      std::cerr << "jobstream-server: SIGHUP: no --auth_tokens to re-read\n";
    } else if (absl::Status s = authenticator->Reload(); !s.ok()) {
      std::cerr << "jobstream-server: SIGHUP: " << s.message()
                << "; the tokens in force stay\n";
    } else {
      std::cerr << "jobstream-server: SIGHUP: " << authenticator->tokens() << " tokens from "
                << absl::GetFlag(FLAGS_auth_tokens) << "\n";
    }
  }
  std::cerr << "jobstream-server: signal " << signal << ", shutting down\n";

  const absl::Time shutdown_start = absl::Now();
  auto phase = [&](const char* what) {
    std::cerr << "jobstream-server: " << what << " ("
              << absl::FormatDuration(absl::Trunc(absl::Now() - shutdown_start, absl::Milliseconds(1)))
              << ")\n";
  };
  health_service.Shutdown();
  if (metrics_http) metrics_http->Stop();  // its gauges read the store, closed below
  // Load balancers watching health hear NOT_SERVING before the streams are cut.
  health_service.AwaitWatchersTold(absl::Seconds(1));
  scheduler.Stop();  // a fire under way ends first
  hub.Close(absl::UnavailableError(
      "server is shutting down; watch again after the last sequence received"));
  // Let unary calls in flight finish (a Submit waits for its commit), then stop at once:
  // gRPC's own drain would also wait for idle client connections, up to its deadline.
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(5);
  manager->StopBulk();     // a bulk call stops after its page
  manager->StopRunning();  // long-polling LeaseJob calls end now
  while (calls.in_flight() > 0 && absl::Now() < drain_deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  server->Shutdown(std::chrono::system_clock::now());
  phase("calls drained");
  runner.Stop();
  phase("running jobs requeued");
  stats.reset();  // it reads the store
  stop_sweeping.Notify();
  sweeper.join();
  absl::Status health = backend->Close();
  backend.reset();
  phase("store closed");
  jobstream::tracing::StopExporter();  // the spans of what ended are sent
  jobstream::logs::Stop();
  if (!health.ok()) {
    std::cerr << "jobstream-server: the store failed earlier: " << health << "\n";
    return 1;
  }
  return 0;
}
