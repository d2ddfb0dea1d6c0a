#pragma once

// A unary call served by passing it through to another daemon that owns the state (leases and
// namespaces are contentd's): the request's namespace (its `containerd-namespace` header, else
// `default_namespace`) and deadline go along, the lease header does not; the owner's answer and
// error come back unchanged, except that an unreachable owner is Unavailable naming `owner`
// ("leases are contentd's, at /run/berth/contentd.sock"). Header-only; thread-safe as the stub.
//
//   return server::ForwardUnary(server_context, default_namespace_, "leases are contentd's at " +
//                               address, *stub_, &Stub::Create, *request, response);

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/server/request_context.h"

namespace berth::server {

template <typename Stub, typename Request, typename Response>
grpc::Status ForwardUnary(grpc::ServerContext* server_context,
                          const std::string& default_namespace, absl::string_view owner,
                          Stub& stub,
                          grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                       Response*),
                          const Request& request, Response* response) {
  absl::StatusOr<Context> ctx = ContextFrom(*server_context, default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  grpc::ClientContext client_context;
  ApplyContext(Context{ctx->ns, "", ctx->deadline}, &client_context);
  grpc::Status status = (stub.*method)(&client_context, request, response);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return grpc::Status(status.error_code(),
                        absl::StrCat(owner, ": ", status.error_message()));
  }
  return status;
}

}  // namespace berth::server
