#pragma once

// containerd.services.namespaces.v1.Namespaces on a daemon's own socket (imaged's, execd's),
// each call passed through unchanged to contentd, which owns the namespace registry
// (DESIGN.md). containerd's clients read a namespace's labels on the connection they use for
// everything else (the default snapshotter, `containerd.io/defaults/snapshotter`, before
// `ctr images check` stats an image's snapshot); pointed at one daemon alone they need
// Namespaces there. Errors as lib/server/forward.h says. Keeps no state. Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"

namespace berth::namespaces {

class NamespacesForwarder final
    : public ::containerd::services::namespaces::v1::Namespaces::Service {
 public:
  // `contentd` is a channel to contentd's socket (connected on first use).
  NamespacesForwarder(std::shared_ptr<grpc::Channel> contentd, std::string contentd_address,
                      std::string default_namespace);
  NamespacesForwarder(const NamespacesForwarder&) = delete;
  NamespacesForwarder& operator=(const NamespacesForwarder&) = delete;

  grpc::Status Get(grpc::ServerContext* server_context,
                   const ::containerd::services::namespaces::v1::GetNamespaceRequest* request,
                   ::containerd::services::namespaces::v1::GetNamespaceResponse* response) override;
  grpc::Status List(
      grpc::ServerContext* server_context,
      const ::containerd::services::namespaces::v1::ListNamespacesRequest* request,
      ::containerd::services::namespaces::v1::ListNamespacesResponse* response) override;
  grpc::Status Create(
      grpc::ServerContext* server_context,
      const ::containerd::services::namespaces::v1::CreateNamespaceRequest* request,
      ::containerd::services::namespaces::v1::CreateNamespaceResponse* response) override;
  grpc::Status Update(
      grpc::ServerContext* server_context,
      const ::containerd::services::namespaces::v1::UpdateNamespaceRequest* request,
      ::containerd::services::namespaces::v1::UpdateNamespaceResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* server_context,
                      const ::containerd::services::namespaces::v1::DeleteNamespaceRequest* request,
                      google::protobuf::Empty* response) override;

 private:
  using Stub = ::containerd::services::namespaces::v1::Namespaces::Stub;

  std::unique_ptr<Stub> stub_;
  const std::string owner_;  // "namespaces are contentd's, at <address>"
  const std::string default_namespace_;
};

}  // namespace berth::namespaces
