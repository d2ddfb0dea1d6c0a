#pragma once

// A leases::LeaseManager backed by a contentd's (or containerd's) Leases service over gRPC.
// Each call sends ctx as the `containerd-namespace` header; server errors come back with their
// code and message unchanged, transport failures are Unavailable. Thread-safe.
//
//   berth::leases::GrpcLeaseManager leases(berth::Dial("/run/berth/contentd.sock"));
//   auto lease = leases.Create({.ns = "default"}, "", {{"containerd.io/gc.expire", ...}});
//   berth::Context ctx{"default", lease->id};   // then pass ctx to every store call

#include <grpcpp/grpcpp.h>

#include <memory>

#include "containerd/services/leases/v1/leases.grpc.pb.h"
#include "lib/leases/lease_manager.h"

namespace berth::leases {

class GrpcLeaseManager : public LeaseManager {
 public:
  explicit GrpcLeaseManager(std::shared_ptr<grpc::Channel> channel);
  GrpcLeaseManager(const GrpcLeaseManager&) = delete;
  GrpcLeaseManager& operator=(const GrpcLeaseManager&) = delete;

  // An empty id asks the server to generate one (returned in the Lease).
  absl::StatusOr<Lease> Create(const Context& ctx, const std::string& id,
                               const std::map<std::string, std::string>& labels) override;
  absl::Status Delete(const Context& ctx, const std::string& id, bool sync) override;
  absl::StatusOr<std::vector<Lease>> List(const Context& ctx,
                                          const std::vector<std::string>& filters) override;
  absl::Status AddResource(const Context& ctx, const std::string& lease,
                           const Resource& resource) override;
  absl::Status DeleteResource(const Context& ctx, const std::string& lease,
                              const Resource& resource) override;
  absl::StatusOr<std::vector<Resource>> ListResources(const Context& ctx,
                                                      const std::string& lease) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::leases::v1::Leases::Stub> stub_;
};

}  // namespace berth::leases
