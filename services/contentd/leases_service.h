#pragma once

// contentd's containerd.services.leases.v1.Leases server over any leases::LeaseManager.
// As containerd: Create with an empty id generates one ("<nanoseconds>-<random>"); Delete
// honours `sync`. Requests without a `containerd-namespace` header act in the default
// namespace. Thread-safe.

#include <string>

#include "containerd/services/leases/v1/leases.grpc.pb.h"
#include "lib/leases/lease_manager.h"

namespace berth::contentd {

class LeasesService final : public ::containerd::services::leases::v1::Leases::Service {
 public:
  // `leases` must outlive the service.
  LeasesService(leases::LeaseManager& leases, std::string default_namespace);
  LeasesService(const LeasesService&) = delete;
  LeasesService& operator=(const LeasesService&) = delete;

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
  leases::LeaseManager& leases_;
  const std::string default_namespace_;
};

// containerd's leases.WithRandomID: "<nanoseconds of the current second>-<random>", with a
// random part that always passes the identifier rule (containerd's base64 may not).
std::string GenerateLeaseId();

}  // namespace berth::contentd
