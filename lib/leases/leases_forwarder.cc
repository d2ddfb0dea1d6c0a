#include "lib/leases/leases_forwarder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/server/forward.h"

namespace berth::leases {

namespace v1 = ::containerd::services::leases::v1;

LeasesForwarder::LeasesForwarder(std::shared_ptr<grpc::Channel> contentd,
                                 std::string contentd_address, std::string default_namespace)
    : stub_(v1::Leases::NewStub(contentd)),
      contentd_address_(std::move(contentd_address)),
      default_namespace_(std::move(default_namespace)) {}

template <typename Request, typename Response>
grpc::Status LeasesForwarder::Forward(
    grpc::ServerContext* server_context, const Request& request, Response* response,
    grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*)) {
  return server::ForwardUnary(server_context, default_namespace_,
                              absl::StrCat("leases are contentd's, at ", contentd_address_),
                              *stub_, method, request, response);
}

grpc::Status LeasesForwarder::Create(grpc::ServerContext* server_context,
                                     const v1::CreateRequest* request,
                                     v1::CreateResponse* response) {
  return Forward(server_context, *request, response, &Stub::Create);
}

grpc::Status LeasesForwarder::Delete(grpc::ServerContext* server_context,
                                     const v1::DeleteRequest* request,
                                     google::protobuf::Empty* response) {
  return Forward(server_context, *request, response, &Stub::Delete);
}

grpc::Status LeasesForwarder::List(grpc::ServerContext* server_context,
                                   const v1::ListRequest* request, v1::ListResponse* response) {
  return Forward(server_context, *request, response, &Stub::List);
}

grpc::Status LeasesForwarder::AddResource(grpc::ServerContext* server_context,
                                          const v1::AddResourceRequest* request,
                                          google::protobuf::Empty* response) {
  return Forward(server_context, *request, response, &Stub::AddResource);
}

grpc::Status LeasesForwarder::DeleteResource(grpc::ServerContext* server_context,
                                             const v1::DeleteResourceRequest* request,
                                             google::protobuf::Empty* response) {
  return Forward(server_context, *request, response, &Stub::DeleteResource);
}

grpc::Status LeasesForwarder::ListResources(grpc::ServerContext* server_context,
                                            const v1::ListResourcesRequest* request,
                                            v1::ListResourcesResponse* response) {
  return Forward(server_context, *request, response, &Stub::ListResources);
}

}  // namespace berth::leases
