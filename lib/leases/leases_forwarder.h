#pragma once

// containerd.services.leases.v1.Leases on a daemon's own socket (imaged's, execd's), each call
// passed through unchanged to contentd (the source of truth for leases, DESIGN.md).
// containerd's clients make a lease on the connection they use for everything else before they
// write records: `ctr images tag` and `ctr containers create` call Leases.Create, then write
// with the lease as the `containerd-lease` header, then Leases.Delete. Pointed at one daemon
// alone they need Leases there.
//
// The request's namespace (its header, else the default) and deadline go to contentd; contentd's
// answer and error come back as they are. contentd unreachable: Unavailable, naming it.
// The daemon keeps no lease state of its own. Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "containerd/services/leases/v1/leases.grpc.pb.h"

namespace berth::leases {

class LeasesForwarder final : public ::containerd::services::leases::v1::Leases::Service {
 public:
  // `contentd` is a channel to contentd's socket (connected on first use).
  LeasesForwarder(std::shared_ptr<grpc::Channel> contentd, std::string contentd_address,
                  std::string default_namespace);
  LeasesForwarder(const LeasesForwarder&) = delete;
  LeasesForwarder& operator=(const LeasesForwarder&) = delete;

  grpc::Status Create(grpc::ServerContext* server_context,
                      const ::containerd::services::leases::v1::CreateRequest* request,
                      ::containerd::services::leases::v1::CreateResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* server_context,
                      const ::containerd::services::leases::v1::DeleteRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status List(grpc::ServerContext* server_context,
                    const ::containerd::services::leases::v1::ListRequest* request,
                    ::containerd::services::leases::v1::ListResponse* response) override;
  grpc::Status AddResource(grpc::ServerContext* server_context,
                           const ::containerd::services::leases::v1::AddResourceRequest* request,
                           google::protobuf::Empty* response) override;
  grpc::Status DeleteResource(
      grpc::ServerContext* server_context,
      const ::containerd::services::leases::v1::DeleteResourceRequest* request,
      google::protobuf::Empty* response) override;
  grpc::Status ListResources(
      grpc::ServerContext* server_context,
      const ::containerd::services::leases::v1::ListResourcesRequest* request,
      ::containerd::services::leases::v1::ListResourcesResponse* response) override;

 private:
  using Stub = ::containerd::services::leases::v1::Leases::Stub;

  // Calls `method` on contentd with the request's namespace and deadline.
  template <typename Request, typename Response>
  grpc::Status Forward(grpc::ServerContext* server_context, const Request& request,
                       Response* response,
                       grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                    Response*));

  std::unique_ptr<Stub> stub_;
  const std::string contentd_address_;
  const std::string default_namespace_;
};

}  // namespace berth::leases
