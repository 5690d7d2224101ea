// JobClient: a typed, synchronous wrapper of JobService for tools and the gateway. Its
// Watch follows a job to its end across broken streams and server restarts, resuming
// after the last sequence it delivered, so the caller sees every event once, in order.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "jobstream/v1/jobs.grpc.pb.h"

namespace jobstream::client {

absl::Status FromGrpc(const grpc::Status& s);

// The PEM text of a file named by `flag`; INVALID_ARGUMENT saying which flag and why not.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view flag);

// The serving side's --tls_cert, --tls_key and --tls_client_ca (server and gateway alike):
// cert and key go together, a client CA needs them.
absl::Status CheckServingTlsFlags(const std::string& cert, const std::string& key,
                                  const std::string& client_ca);

// Whether a watch stream that ended with `code` can be reopened after the last sequence
// received without losing anything: the server went away, restarted, cut a slow watcher
// off, or ended the stream early. Shared by every client that resumes (CLI, gateway).
bool ResumableWatchEnd(grpc::StatusCode code);

struct WatchOptions {
  // Give up when the server has been unreachable this long.
  absl::Duration reconnect_timeout = absl::Seconds(60);
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  // Told about each reconnect attempt and why (for a status line).
  std::function<void(const absl::Status& why)> on_reconnect;
};

// How to reach the server: plaintext by default; with ca_file, TLS that trusts that CA
// (and, with cert_file and key_file, presents a client certificate, for mTLS). With a
// token, every call on the channel carries "authorization: Bearer <token>".
struct ChannelOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string token;
};

// The token a command-line tool presents: the first line of `token_file` if given, else
// $JOBSTREAM_TOKEN, else none (an empty string). Never a flag's value: a command line is
// visible to every user of the machine.
absl::StatusOr<std::string> ReadToken(const std::string& token_file);

// The gRPC target of a --server value: an address as it is, or several, comma-separated
// (each IP:PORT; localhost means 127.0.0.1), as one target that balances over them.
absl::StatusOr<std::string> ServersTarget(const std::string& servers);

class JobClient {
 public:
  explicit JobClient(std::shared_ptr<grpc::Channel> channel);
  static std::shared_ptr<grpc::Channel> Connect(const std::string& address);
  // `address` may name several servers (ServersTarget). INVALID_ARGUMENT when a file
  // cannot be read, only one of cert and key is given, or an address is not one.
  static absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const std::string& address,
                                                                const ChannelOptions& options);
  // The credentials of a channel with `options` (plaintext, or TLS with its files read).
  static absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
      const ChannelOptions& options);

  absl::StatusOr<v1::Job> Submit(const v1::SubmitRequest& request);
  absl::StatusOr<v1::SubmitBatchResponse> SubmitBatch(const v1::SubmitBatchRequest& request);
  absl::StatusOr<v1::Job> GetStatus(const std::string& job_id);
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request);
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  absl::Status Delete(const std::string& job_id);
  absl::StatusOr<v1::Identity> WhoAmI();

  // Calls on_event for every event after `after_sequence` until the terminal one, and
  // returns the job as of that event. Errors: those WatchJob returns for a bad request,
  // or UNAVAILABLE once reconnect_timeout passed without reaching the server.
  absl::StatusOr<v1::Job> Watch(const std::string& job_id, int64_t after_sequence,
                                const std::function<void(const v1::JobEvent&)>& on_event,
                                const WatchOptions& options = {});

  // Reads artifact `name` of a job from byte `offset`: on_start once with its description,
  // then on_data for each piece, in order. A broken stream is reopened at the next byte
  // (as Watch does); if the artifact changed meanwhile (another sha256), ABORTED.
  absl::StatusOr<v1::Artifact> ReadArtifact(
      const std::string& job_id, const std::string& name, int64_t offset,
      const std::function<void(const v1::Artifact&)>& on_start,
      const std::function<absl::Status(absl::string_view)>& on_data,
      const WatchOptions& options = {});

 private:
  std::unique_ptr<v1::JobService::Stub> stub_;
};

}  // namespace jobstream::client
