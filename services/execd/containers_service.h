#pragma once

// execd's containerd.services.containers.v1.Containers server over any
// containers::ContainerStore (it never sees SqliteContainerStore's class). Each handler reads
// the request's context (namespace from `containerd-namespace`, else the default), calls the
// store, and converts the result once. As containerd's, a successful Create, Update or Delete
// publishes /containers/create, /containers/update or /containers/delete
// (containerd.events.ContainerCreate, ContainerUpdate, ContainerDelete) in the request's
// namespace; the change is done by then, so a failed publish is logged, not returned (the
// publisher's outbox makes that rare: it fails only when its own database does).
//
// ListStream sends one record per message, as containerd's (its client prefers it to List).
//
// Metrics (when a registry is given): `berth_containers_records` (records in every
// namespace), refreshed from `count` at construction and after each Create and Delete.
// Thread-safe.

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "containerd/services/containers/v1/containers.grpc.pb.h"
#include "lib/containers/container_store.h"
#include "lib/events/publisher.h"

namespace berth::execd {

struct ContainersServiceOptions {
  std::string default_namespace = "default";
  events::Publisher* publisher = nullptr;          // null: publish nothing
  std::shared_ptr<prometheus::Registry> registry;  // null: no metrics
  std::function<absl::StatusOr<int64_t>()> count;  // records stored; empty: gauge stays 0
};

class ContainersService final
    : public ::containerd::services::containers::v1::Containers::Service {
 public:
  // `store` and `options.publisher` must outlive the service.
  ContainersService(containers::ContainerStore& store, ContainersServiceOptions options);
  ContainersService(const ContainersService&) = delete;
  ContainersService& operator=(const ContainersService&) = delete;

  grpc::Status Get(grpc::ServerContext* server_context,
                   const ::containerd::services::containers::v1::GetContainerRequest* request,
                   ::containerd::services::containers::v1::GetContainerResponse* response) override;
  grpc::Status List(
      grpc::ServerContext* server_context,
      const ::containerd::services::containers::v1::ListContainersRequest* request,
      ::containerd::services::containers::v1::ListContainersResponse* response) override;
  grpc::Status ListStream(
      grpc::ServerContext* server_context,
      const ::containerd::services::containers::v1::ListContainersRequest* request,
      grpc::ServerWriter<::containerd::services::containers::v1::ListContainerMessage>* writer)
      override;
  grpc::Status Create(
      grpc::ServerContext* server_context,
      const ::containerd::services::containers::v1::CreateContainerRequest* request,
      ::containerd::services::containers::v1::CreateContainerResponse* response) override;
  grpc::Status Update(
      grpc::ServerContext* server_context,
      const ::containerd::services::containers::v1::UpdateContainerRequest* request,
      ::containerd::services::containers::v1::UpdateContainerResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* server_context,
                      const ::containerd::services::containers::v1::DeleteContainerRequest* request,
                      google::protobuf::Empty* response) override;

 private:
  // The records a List or ListStream request selects, in the request's namespace.
  absl::StatusOr<std::vector<containers::Container>> Select(
      const grpc::ServerContext& server_context,
      const ::containerd::services::containers::v1::ListContainersRequest& request);
  // Publishes `event` on `topic` in ctx.ns; logs a failure.
  void Publish(const Context& ctx, absl::string_view topic, const google::protobuf::Message& event);
  void RefreshGauge();

  containers::ContainerStore& store_;
  const ContainersServiceOptions options_;
  prometheus::Gauge* records_ = nullptr;  // owned by the registry; null without one
};

}  // namespace berth::execd
