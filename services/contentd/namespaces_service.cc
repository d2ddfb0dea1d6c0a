#include "services/contentd/namespaces_service.h"

#include <utility>
#include <vector>

#include "containerd/events/namespace.pb.h"
#include "lib/base/grpc_status.h"
#include "lib/base/logging.h"
#include "lib/server/request_context.h"

namespace berth::contentd {
namespace {

namespace v1 = ::containerd::services::namespaces::v1;

v1::Namespace NamespaceToProto(const namespaces::Namespace& ns);
namespaces::Namespace NamespaceFromProto(const v1::Namespace& proto);

}  // namespace

NamespacesService::NamespacesService(namespaces::NamespaceStore& store,
                                     events::Publisher* publisher, std::string default_namespace)
    : store_(store), publisher_(publisher), default_namespace_(std::move(default_namespace)) {}

grpc::Status NamespacesService::Get(grpc::ServerContext* server_context,
                                    const v1::GetNamespaceRequest* request,
                                    v1::GetNamespaceResponse* response) {
  absl::StatusOr<namespaces::Namespace> ns = store_.Get(request->name());
  if (!ns.ok()) {
    return ToGrpcStatus(ns.status());
  }
  *response->mutable_namespace_() = NamespaceToProto(*ns);
  return grpc::Status::OK;
}

grpc::Status NamespacesService::List(grpc::ServerContext* server_context,
                                     const v1::ListNamespacesRequest* request,
                                     v1::ListNamespacesResponse* response) {
  absl::StatusOr<std::vector<namespaces::Namespace>> list = store_.List();
  if (!list.ok()) {
    return ToGrpcStatus(list.status());
  }
  for (const namespaces::Namespace& ns : *list) {
    *response->add_namespaces() = NamespaceToProto(ns);
  }
  return grpc::Status::OK;
}

grpc::Status NamespacesService::Create(grpc::ServerContext* server_context,
                                       const v1::CreateNamespaceRequest* request,
                                       v1::CreateNamespaceResponse* response) {
  namespaces::Namespace ns = NamespaceFromProto(request->namespace_());
  if (absl::Status status = store_.Create(ns.name, ns.labels); !status.ok()) {
    return ToGrpcStatus(status);
  }
  containerd::events::NamespaceCreate event;
  event.set_name(ns.name);
  event.mutable_labels()->insert(ns.labels.begin(), ns.labels.end());
  Publish(*server_context, "/namespaces/create", event);
  *response->mutable_namespace_() = NamespaceToProto(ns);
  return grpc::Status::OK;
}

grpc::Status NamespacesService::Update(grpc::ServerContext* server_context,
                                       const v1::UpdateNamespaceRequest* request,
                                       v1::UpdateNamespaceResponse* response) {
  std::vector<std::string> fieldpaths(request->update_mask().paths().begin(),
                                      request->update_mask().paths().end());
  absl::StatusOr<namespaces::Namespace> updated =
      store_.Update(NamespaceFromProto(request->namespace_()), fieldpaths);
  if (!updated.ok()) {
    return ToGrpcStatus(updated.status());
  }
  containerd::events::NamespaceUpdate event;
  event.set_name(updated->name);
  event.mutable_labels()->insert(updated->labels.begin(), updated->labels.end());
  Publish(*server_context, "/namespaces/update", event);
  *response->mutable_namespace_() = NamespaceToProto(*updated);
  return grpc::Status::OK;
}

grpc::Status NamespacesService::Delete(grpc::ServerContext* server_context,
                                       const v1::DeleteNamespaceRequest* request,
                                       google::protobuf::Empty* response) {
  if (absl::Status status = store_.Delete(request->name()); !status.ok()) {
    return ToGrpcStatus(status);
  }
  containerd::events::NamespaceDelete event;
  event.set_name(request->name());
  Publish(*server_context, "/namespaces/delete", event);
  return grpc::Status::OK;
}

void NamespacesService::Publish(const grpc::ServerContext& server_context, absl::string_view topic,
                                const google::protobuf::Message& event) {
  if (publisher_ == nullptr) {
    return;
  }
  absl::StatusOr<Context> ctx = server::ContextFrom(server_context, default_namespace_);
  std::string ns = ctx.ok() ? ctx->ns : default_namespace_;
  if (absl::Status status = publisher_->Publish(ns, topic, event); !status.ok()) {
    BERTH_LOG(Warn) << "publish " << topic << ": " << status;
  }
}

namespace {

v1::Namespace NamespaceToProto(const namespaces::Namespace& ns) {
  v1::Namespace proto;
  proto.set_name(ns.name);
  proto.mutable_labels()->insert(ns.labels.begin(), ns.labels.end());
  return proto;
}

namespaces::Namespace NamespaceFromProto(const v1::Namespace& proto) {
  namespaces::Namespace ns;
  ns.name = proto.name();
  ns.labels.insert(proto.labels().begin(), proto.labels().end());
  return ns;
}

}  // namespace
}  // namespace berth::contentd
