#include "server/rpc/request_log.h"

#include "server/rpc/authorize.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::rpc {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The job a request or response names: job_id, id (a Job), or the job of a lease id.
std::string JobOf(const google::protobuf::Message& message) {
  const google::protobuf::Descriptor* d = message.GetDescriptor();
  const google::protobuf::Reflection* r = message.GetReflection();
  for (const char* name : {"job_id", "id"}) {
    const auto* field = d->FindFieldByName(name);
    if (field != nullptr && field->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !field->is_repeated()) {
      return r->GetString(message, field);
    }
  }
  const auto* lease = d->FindFieldByName("lease_id");
  if (lease == nullptr) {
    const auto* header = d->FindFieldByName("header");  // UploadArtifact
    if (header == nullptr || header->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE ||
        !r->HasField(message, header)) {
      return "";
    }
    return JobOf(r->GetMessage(message, header));
  }
  if (lease->type() != google::protobuf::FieldDescriptor::TYPE_STRING) return "";
  const std::string id = r->GetString(message, lease);
  return id.substr(0, id.find('.'));  // lease ids start with their job's id
}

class RequestLog : public grpc::experimental::Interceptor {
 public:
  RequestLog(grpc::experimental::ServerRpcInfo* info, const auth::Authenticator* auth)
      : method_(info->method()), auth_(auth), start_(absl::Now()) {
    // Raw methods receive bytes, not a message.
    raw_ = absl::EndsWith(method_, "/WatchJob") || absl::EndsWith(method_, "/WatchJobs");
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      // Tokens seen lately are a cache lookup (Authenticator), not a second hash.
      if (auth_->enabled()) {
        auto who = auth_->Authenticate(AuthorizationOf(*methods->GetRecvInitialMetadata()));
        if (who.ok()) {
          token_ = who->name;
          tenant_ = who->tenant;
        }
      }
    }
    if (job_.empty() &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      void* message = methods->GetRecvMessage();
      if (message != nullptr && raw_) {
        grpc::ByteBuffer copy(*static_cast<grpc::ByteBuffer*>(message));
        grpc::ProtoBufferReader reader(&copy);
        v1::WatchJobRequest request;  // WatchJobsRequest has no job: job_id stays empty
        if (absl::EndsWith(method_, "/WatchJob") && request.ParseFromZeroCopyStream(&reader)) {
          job_ = request.job_id();
        }
      } else if (message != nullptr) {
        job_ = JobOf(*static_cast<const google::protobuf::Message*>(message));
      }
    }
    if (job_.empty() && !raw_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      if (const void* message = methods->GetSendMessage(); message != nullptr) {
        job_ = JobOf(*static_cast<const google::protobuf::Message*>(message));
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      logs::Line line("rpc");
      line.Add("method", absl::string_view(method_).substr(method_.rfind('/') + 1));
      if (!token_.empty()) line.Add("token", token_).Add("tenant", tenant_);
      if (!job_.empty()) line.Add("job_id", job_);
      line.Add("status", StatusName(status.error_code()))
          .Add("ms", absl::ToDoubleMilliseconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  static absl::string_view StatusName(grpc::StatusCode code) {
    static constexpr absl::string_view kNames[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    const int i = static_cast<int>(code);
    return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
  }

  const std::string method_;
  const auth::Authenticator* const auth_;
  const absl::Time start_;
  bool raw_ = false;
  std::string token_, tenant_, job_;
};

}  // namespace

grpc::experimental::Interceptor* RequestLogFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // Our API's calls; not health probes or reflection.
  if (!logs::Enabled() || !absl::StartsWith(info->method(), "/jobstream.")) return nullptr;
  return new RequestLog(info, auth_);
}

}  // namespace jobstream::rpc
