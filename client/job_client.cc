#include "client/job_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/client_interceptor.h"
#include "jobstream/v1/job_states.h"

namespace jobstream::client {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

JobClient::JobClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::JobService::NewStub(std::move(channel))) {}

std::shared_ptr<grpc::Channel> JobClient::Connect(const std::string& address) {
  return *Connect(address, ChannelOptions());
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no PEM data"));
  }
  return pem;
}

absl::Status CheckServingTlsFlags(const std::string& cert, const std::string& key,
                                  const std::string& client_ca) {
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!client_ca.empty() && cert.empty()) {
    return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadToken(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    if (!in) return absl::InvalidArgumentError("--token_file: cannot read " + token_file);
    std::getline(in, token);
  } else if (const char* env = std::getenv("JOBSTREAM_TOKEN"); env != nullptr) {
    token = env;
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "the token must be printable ASCII without spaces (" +
          std::string(token_file.empty() ? "$JOBSTREAM_TOKEN" : token_file) + ")");
    }
  }
  return token;
}

namespace {
// Adds the bearer token to every call of a channel, on plaintext and TLS alike (gRPC's
// call credentials would refuse a plaintext channel).
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new TokenInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel, which owns this factory
};
}  // namespace

absl::StatusOr<std::string> ServersTarget(const std::string& servers) {
  std::vector<std::string> addresses = absl::StrSplit(servers, ',', absl::SkipWhitespace());
  if (addresses.size() <= 1) return servers;
  std::string scheme;
  for (std::string& a : addresses) {
    a = std::string(absl::StripAsciiWhitespace(a));
    if (absl::StartsWith(a, "localhost:")) a = "127.0.0.1" + a.substr(9);
    const size_t colon = a.rfind(':');
    int port = 0;
    bool ok = colon != std::string::npos && absl::SimpleAtoi(a.substr(colon + 1), &port) &&
              port > 0 && port <= 65535;
    std::string host = ok ? a.substr(0, colon) : "";
    const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (v6) host = host.substr(1, host.size() - 2);
    in6_addr ip;
    ok = ok && inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), &ip) == 1;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server address \"", a, "\": several addresses must each be IP:PORT (a DNS name "
          "with several addresses can be given alone, as dns:///NAME:PORT)"));
    }
    const std::string this_scheme = v6 ? "ipv6:" : "ipv4:";
    if (!scheme.empty() && scheme != this_scheme) {
      return absl::InvalidArgumentError("several server addresses must be all IPv4 or all IPv6");
    }
    scheme = this_scheme;
  }
  return scheme + absl::StrJoin(addresses, ",");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> JobClient::Connect(const std::string& address,
                                                                  const ChannelOptions& options) {
  auto credentials = ChannelCredentials(options);
  if (!credentials.ok()) return credentials.status();
  auto target = ServersTarget(address);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments args;
  // Reconnect quickly after a server restart; Watch does its own pacing on top.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // gRPC also takes this as the time a connection attempt is given (its MIN_CONNECT_TIMEOUT,
  // doc/connection-backoff.md): at 100 ms a TCP and TLS handshake to a distant server, or to
  // a busy one, never completed, and calls failed UNAVAILABLE (the gateway answered 503).
  // A refused connection still fails at once and is tried again after the backoff above.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  if (*target != address) {
    // Several servers (of one PostgreSQL store): calls are spread over those that answer,
    // and one that dies is passed over until it is back.
    args.SetServiceConfigJSON(R"({"loadBalancingConfig": [{"round_robin": {}}]})");
  }
  if (options.token.empty()) return grpc::CreateCustomChannel(*target, *credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(options.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(*target, *credentials, args,
                                                                 std::move(factories));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> JobClient::ChannelCredentials(
    const ChannelOptions& options) {
  if (options.ca_file.empty()) {
    if (!options.cert_file.empty() || !options.key_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs TLS: give --server_ca too");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions tls;
  auto ca = ReadPemFile(options.ca_file, "--server_ca");
  if (!ca.ok()) return ca.status();
  tls.pem_root_certs = *std::move(ca);
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--client_cert and --client_key go together");
  }
  if (!options.cert_file.empty()) {
    auto cert = ReadPemFile(options.cert_file, "--client_cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(options.key_file, "--client_key");
    if (!key.ok()) return key.status();
    tls.pem_cert_chain = *std::move(cert);
    tls.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(tls);
}

absl::StatusOr<v1::Job> JobClient::Submit(const v1::SubmitRequest& request) {
  grpc::ClientContext ctx;
  v1::Job job;
  if (auto s = FromGrpc(stub_->Submit(&ctx, request, &job)); !s.ok()) return s;
  return job;
}

absl::StatusOr<v1::SubmitBatchResponse> JobClient::SubmitBatch(
    const v1::SubmitBatchRequest& request) {
  grpc::ClientContext ctx;
  v1::SubmitBatchResponse response;
  if (auto s = FromGrpc(stub_->SubmitBatch(&ctx, request, &response)); !s.ok()) return s;
  return response;
}

absl::StatusOr<v1::Job> JobClient::GetStatus(const std::string& job_id) {
  grpc::ClientContext ctx;
  v1::GetStatusRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  if (auto s = FromGrpc(stub_->GetStatus(&ctx, request, &job)); !s.ok()) return s;
  return job;
}

absl::StatusOr<v1::ListJobsResponse> JobClient::List(const v1::ListJobsRequest& request) {
  grpc::ClientContext ctx;
  v1::ListJobsResponse response;
  if (auto s = FromGrpc(stub_->ListJobs(&ctx, request, &response)); !s.ok()) return s;
  return response;
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& job_id) {
  grpc::ClientContext ctx;
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  if (auto s = FromGrpc(stub_->CancelJob(&ctx, request, &job)); !s.ok()) return s;
  return job;
}

absl::StatusOr<v1::Identity> JobClient::WhoAmI() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::Identity identity;
  if (auto s = FromGrpc(stub_->WhoAmI(&ctx, v1::WhoAmIRequest(), &identity)); !s.ok()) return s;
  return identity;
}

absl::Status JobClient::Delete(const std::string& job_id) {
  grpc::ClientContext ctx;
  v1::DeleteJobRequest request;
  request.set_job_id(job_id);
  v1::DeleteJobResponse response;
  return FromGrpc(stub_->DeleteJob(&ctx, request, &response));
}

namespace {

// Paces the reopening of a resumable stream: exponential backoff, back to the start after
// a stream that delivered something, and a give-up once the server has been out of reach
// for reconnect_timeout.
class Reconnects {
 public:
  explicit Reconnects(const WatchOptions& options)
      : options_(options), backoff_(options.initial_backoff), last_contact_(absl::Now()) {}

  // After a stream ended with `why`: sleeps before the next try, or says why to give up.
  absl::Status Wait(const absl::Status& why, bool progressed) {
    const absl::Time now = absl::Now();
    if (progressed) {
      last_contact_ = now;
      backoff_ = options_.initial_backoff;
    }
    if (now - last_contact_ > options_.reconnect_timeout) {
      return absl::UnavailableError(absl::StrCat("gave up after ",
                                                 absl::FormatDuration(now - last_contact_),
                                                 " without the server: ", why.message()));
    }
    if (options_.on_reconnect) options_.on_reconnect(why);
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff_));
    backoff_ = std::min(backoff_ * 2, options_.max_backoff);
    return absl::OkStatus();
  }

 private:
  const WatchOptions& options_;
  absl::Duration backoff_;
  absl::Time last_contact_;
};

}  // namespace

bool ResumableWatchEnd(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:  // ended without a terminal event: just resume
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:  // we never cancel a watch: the server did (shutdown)
      return true;
    default:
      return false;
  }
}

absl::StatusOr<v1::Job> JobClient::Watch(const std::string& job_id, int64_t after_sequence,
                                         const std::function<void(const v1::JobEvent&)>& on_event,
                                         const WatchOptions& options) {
  int64_t last = after_sequence;
  Reconnects reconnects(options);
  for (;;) {
    grpc::ClientContext ctx;
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_after_sequence(last);
    auto reader = stub_->WatchJob(&ctx, request);
    v1::JobEvent event;
    bool received = false;
    // The job as the newest event delivered ended it: the server ends the stream right
    // after the job's last end (an earlier one, a retry followed, is read past).
    std::optional<v1::Job> ended;
    while (reader->Read(&event)) {
      received = true;
      if (event.sequence() <= last) continue;  // never deliver twice
      last = event.sequence();
      on_event(event);
      ended.reset();
      if (v1::IsTerminal(event.type())) ended = event.status();
    }
    absl::Status status = FromGrpc(reader->Finish());
    if (status.ok() && ended) return *std::move(ended);
    if (status.ok()) {
      // A finished job with nothing after `last`: report where it stands.
      auto job = GetStatus(job_id);
      if (job.ok() && v1::IsFinished(job->state()) && job->last_sequence() <= last) {
        return job;
      }
    }
    if (!ResumableWatchEnd(static_cast<grpc::StatusCode>(status.code()))) return status;
    if (absl::Status s = reconnects.Wait(status, received || status.ok()); !s.ok()) return s;
  }
}

absl::StatusOr<v1::Artifact> JobClient::ReadArtifact(
    const std::string& job_id, const std::string& name, int64_t offset,
    const std::function<void(const v1::Artifact&)>& on_start,
    const std::function<absl::Status(absl::string_view)>& on_data, const WatchOptions& options) {
  std::optional<v1::Artifact> artifact;
  int64_t next = offset;
  Reconnects reconnects(options);
  for (;;) {
    grpc::ClientContext ctx;
    v1::GetArtifactRequest request;
    request.set_job_id(job_id);
    request.set_name(name);
    request.set_offset(next);
    auto reader = stub_->GetArtifact(&ctx, request);
    v1::GetArtifactResponse message;
    bool received = false;
    absl::Status data_error;
    while (reader->Read(&message)) {
      received = true;
      if (message.has_artifact()) {
        if (!artifact) {
          artifact = message.artifact();
          on_start(*artifact);
        } else if (message.artifact().sha256() != artifact->sha256()) {
          ctx.TryCancel();
          reader->Finish().ok();
          return absl::AbortedError(absl::StrCat("artifact \"", name, "\" of job ", job_id,
                                                 " was replaced while it was read"));
        }
      }
      if (message.data().empty()) continue;
      if (message.offset() != next) {
        data_error = absl::DataLossError(absl::StrCat("expected byte ", next, ", got ",
                                                      message.offset()));
      } else {
        data_error = on_data(message.data());
        next += static_cast<int64_t>(message.data().size());
      }
      if (!data_error.ok()) {
        ctx.TryCancel();
        reader->Finish().ok();
        return data_error;
      }
    }
    absl::Status status = FromGrpc(reader->Finish());
    if (status.ok()) {
      if (artifact && next == artifact->size()) return *artifact;
      status = absl::UnavailableError("the stream ended early");
    }
    const auto code = status.code();
    if (code != absl::StatusCode::kUnavailable && code != absl::StatusCode::kDeadlineExceeded &&
        code != absl::StatusCode::kCancelled && code != absl::StatusCode::kInternal &&
        code != absl::StatusCode::kUnknown) {
      return status;
    }
    if (absl::Status s = reconnects.Wait(status, received); !s.ok()) return s;
  }
}

}  // namespace jobstream::client
