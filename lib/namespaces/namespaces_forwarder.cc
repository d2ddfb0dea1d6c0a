#include "lib/namespaces/namespaces_forwarder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/server/forward.h"

namespace berth::namespaces {

namespace v1 = ::containerd::services::namespaces::v1;

NamespacesForwarder::NamespacesForwarder(std::shared_ptr<grpc::Channel> contentd,
                                         std::string contentd_address,
                                         std::string default_namespace)
    : stub_(v1::Namespaces::NewStub(contentd)),
      owner_(absl::StrCat("namespaces are contentd's, at ", contentd_address)),
      default_namespace_(std::move(default_namespace)) {}

grpc::Status NamespacesForwarder::Get(grpc::ServerContext* server_context,
                                      const v1::GetNamespaceRequest* request,
                                      v1::GetNamespaceResponse* response) {
  return server::ForwardUnary(server_context, default_namespace_, owner_, *stub_, &Stub::Get,
                              *request, response);
}

grpc::Status NamespacesForwarder::List(grpc::ServerContext* server_context,
                                       const v1::ListNamespacesRequest* request,
                                       v1::ListNamespacesResponse* response) {
  return server::ForwardUnary(server_context, default_namespace_, owner_, *stub_, &Stub::List,
                              *request, response);
}

grpc::Status NamespacesForwarder::Create(grpc::ServerContext* server_context,
                                         const v1::CreateNamespaceRequest* request,
                                         v1::CreateNamespaceResponse* response) {
  return server::ForwardUnary(server_context, default_namespace_, owner_, *stub_, &Stub::Create,
                              *request, response);
}

grpc::Status NamespacesForwarder::Update(grpc::ServerContext* server_context,
                                         const v1::UpdateNamespaceRequest* request,
                                         v1::UpdateNamespaceResponse* response) {
  return server::ForwardUnary(server_context, default_namespace_, owner_, *stub_, &Stub::Update,
                              *request, response);
}

grpc::Status NamespacesForwarder::Delete(grpc::ServerContext* server_context,
                                         const v1::DeleteNamespaceRequest* request,
                                         google::protobuf::Empty* response) {
  return server::ForwardUnary(server_context, default_namespace_, owner_, *stub_, &Stub::Delete,
                              *request, response);
}

}  // namespace berth::namespaces
