#include "lib/leases/grpc_lease_manager.h"

#include <utility>

#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/leases/proto_convert.h"

namespace berth::leases {
namespace {

// A ClientContext carrying ctx's namespace and deadline. (A lease call never carries a lease
// header.)
void Prepare(const Context& ctx, grpc::ClientContext* client_context) {
  Context leaseless = ctx;
  leaseless.lease.clear();
  ApplyContext(leaseless, client_context);
}

}  // namespace

GrpcLeaseManager::GrpcLeaseManager(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(v1::Leases::NewStub(channel_)) {}

absl::StatusOr<Lease> GrpcLeaseManager::Create(const Context& ctx, const std::string& id,
                                               const std::map<std::string, std::string>& labels) {
  grpc::ClientContext client_context;
  Prepare(ctx, &client_context);
  v1::CreateRequest request;
  request.set_id(id);
  request.mutable_labels()->insert(labels.begin(), labels.end());
  v1::CreateResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Create(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return LeaseFromProto(response.lease());
}

absl::Status GrpcLeaseManager::Delete(const Context& ctx, const std::string& id, bool sync) {
  grpc::ClientContext client_context;
  Prepare(ctx, &client_context);
  v1::DeleteRequest request;
  request.set_id(id);
  request.set_sync(sync);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Delete(&client_context, request, &response));
}

absl::StatusOr<std::vector<Lease>> GrpcLeaseManager::List(const Context& ctx,
                                                          const std::vector<std::string>& filters) {
  grpc::ClientContext client_context;
  Prepare(ctx, &client_context);
  v1::ListRequest request;
  for (const std::string& filter : filters) {
    request.add_filters(filter);
  }
  v1::ListResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->List(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  std::vector<Lease> leases;
  for (const v1::Lease& proto : response.leases()) {
    leases.push_back(LeaseFromProto(proto));
  }
  return leases;
}

absl::Status GrpcLeaseManager::AddResource(const Context& ctx, const std::string& lease,
                                           const Resource& resource) {
  grpc::ClientContext client_context;
  Prepare(ctx, &client_context);
  v1::AddResourceRequest request;
  request.set_id(lease);
  *request.mutable_resource() = ResourceToProto(resource);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->AddResource(&client_context, request, &response));
}

absl::Status GrpcLeaseManager::DeleteResource(const Context& ctx, const std::string& lease,
                                              const Resource& resource) {
  grpc::ClientContext client_context;
  Prepare(ctx, &client_context);
  v1::DeleteResourceRequest request;
  request.set_id(lease);
  *request.mutable_resource() = ResourceToProto(resource);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->DeleteResource(&client_context, request, &response));
}

absl::StatusOr<std::vector<Resource>> GrpcLeaseManager::ListResources(const Context& ctx,
                                                                      const std::string& lease) {
  grpc::ClientContext client_context;
  Prepare(ctx, &client_context);
  v1::ListResourcesRequest request;
  request.set_id(lease);
  v1::ListResourcesResponse response;
  if (absl::Status status =
          FromGrpcStatus(stub_->ListResources(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  std::vector<Resource> resources;
  for (const v1::Resource& proto : response.resources()) {
    resources.push_back(ResourceFromProto(proto));
  }
  return resources;
}

}  // namespace berth::leases
