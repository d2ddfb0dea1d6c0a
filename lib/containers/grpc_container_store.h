#pragma once

// A containers::ContainerStore backed by an execd (or any containerd Containers service) over
// gRPC. Code holding a ContainerStore& cannot tell it from execd's SqliteContainerStore: both
// pass container_store_testsuite.h. Each call sends ctx as the `containerd-namespace` and
// `containerd-lease` headers and ctx's deadline as the call's; server errors come back with
// their code and message unchanged, transport failures are Unavailable. Thread-safe.
//
//   berth::containers::GrpcContainerStore containers(berth::Dial("/run/berth/execd.sock"));
//   auto container = containers.Get({"default", ""}, "web");

#include <grpcpp/grpcpp.h>

#include <memory>

#include "containerd/services/containers/v1/containers.grpc.pb.h"
#include "lib/containers/container_store.h"

namespace berth::containers {

class GrpcContainerStore : public ContainerStore {
 public:
  explicit GrpcContainerStore(std::shared_ptr<grpc::Channel> channel);
  GrpcContainerStore(const GrpcContainerStore&) = delete;
  GrpcContainerStore& operator=(const GrpcContainerStore&) = delete;

  absl::StatusOr<Container> Get(const Context& ctx, absl::string_view id) override;
  // The server filters (the filters travel as given); the records come over ListStream, one
  // message each, as containerd's client reads them, so no list is bounded by the message size.
  absl::StatusOr<std::vector<Container>> List(const Context& ctx,
                                              const std::vector<std::string>& filters) override;
  absl::StatusOr<Container> Create(const Context& ctx, const Container& container) override;
  // An empty `fieldpaths` sends no update_mask, which the server reads as a full replace.
  absl::StatusOr<Container> Update(const Context& ctx, const Container& container,
                                   const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const Context& ctx, absl::string_view id) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::containers::v1::Containers::Stub> stub_;
};

}  // namespace berth::containers
