#pragma once

// contentd's containerd.services.namespaces.v1.Namespaces server over any
// namespaces::NamespaceStore. As containerd's, it publishes /namespaces/create, /update and
// /delete (containerd.events.Namespace*) in the request's namespace (the `containerd-namespace`
// header, else the default) when given a publisher; a failed publish is logged, not returned,
// since the change itself is done. List ignores its `filter`, as containerd does. Thread-safe.

#include <string>

#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"
#include "lib/events/publisher.h"
#include "lib/namespaces/namespace_store.h"

namespace berth::contentd {

class NamespacesService final : public ::containerd::services::namespaces::v1::Namespaces::Service {
 public:
  // `store` (and `publisher`, which may be null) must outlive the service.
  NamespacesService(namespaces::NamespaceStore& store, events::Publisher* publisher,
                    std::string default_namespace);
  NamespacesService(const NamespacesService&) = delete;
  NamespacesService& operator=(const NamespacesService&) = delete;

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
  // Publishes `event` on `topic` in the request's namespace; logs a failure.
  void Publish(const grpc::ServerContext& server_context, absl::string_view topic,
               const google::protobuf::Message& event);

  namespaces::NamespaceStore& store_;
  events::Publisher* const publisher_;
  const std::string default_namespace_;
};

}  // namespace berth::contentd
