// RequestLog: one log line per RPC, written when its status goes out: method, token name
// and tenant (if any), the job it concerns, status code and latency. A gRPC server
// interceptor, so every method and stream is covered alike. Never a token or params.
#pragma once

#include "grpcpp/support/server_interceptor.h"
#include "server/auth/tokens.h"

namespace jobstream::rpc {

class RequestLogFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `auth` (which must outlive the server) says whose token a call carries.
  explicit RequestLogFactory(const auth::Authenticator* auth) : auth_(auth) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const auth::Authenticator* const auth_;
};

}  // namespace jobstream::rpc
