#include "lib/containers/grpc_container_store.h"

#include <string>
#include <utility>

#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/base/status_macros.h"
#include "lib/containers/proto_convert.h"

namespace berth::containers {

namespace v1 = ::containerd::services::containers::v1;

GrpcContainerStore::GrpcContainerStore(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(v1::Containers::NewStub(channel_)) {}

absl::StatusOr<Container> GrpcContainerStore::Get(const Context& ctx, absl::string_view id) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::GetContainerRequest request;
  request.set_id(std::string(id));
  v1::GetContainerResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->Get(&client_context, request, &response)));
  return ContainerFromProto(response.container());
}

absl::StatusOr<std::vector<Container>> GrpcContainerStore::List(
    const Context& ctx, const std::vector<std::string>& filters) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ListContainersRequest request;
  request.mutable_filters()->Add(filters.begin(), filters.end());
  std::unique_ptr<grpc::ClientReader<v1::ListContainerMessage>> reader =
      stub_->ListStream(&client_context, request);
  std::vector<Container> containers;
  v1::ListContainerMessage message;
  while (reader->Read(&message)) {
    containers.push_back(ContainerFromProto(message.container()));
  }
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return containers;
}

absl::StatusOr<Container> GrpcContainerStore::Create(const Context& ctx,
                                                     const Container& container) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::CreateContainerRequest request;
  *request.mutable_container() = ContainerToProto(container);
  v1::CreateContainerResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->Create(&client_context, request, &response)));
  return ContainerFromProto(response.container());
}

absl::StatusOr<Container> GrpcContainerStore::Update(const Context& ctx,
                                                     const Container& container,
                                                     const std::vector<std::string>& fieldpaths) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UpdateContainerRequest request;
  *request.mutable_container() = ContainerToProto(container);
  if (!fieldpaths.empty()) {
    request.mutable_update_mask()->mutable_paths()->Add(fieldpaths.begin(), fieldpaths.end());
  }
  v1::UpdateContainerResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->Update(&client_context, request, &response)));
  return ContainerFromProto(response.container());
}

absl::Status GrpcContainerStore::Delete(const Context& ctx, absl::string_view id) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::DeleteContainerRequest request;
  request.set_id(std::string(id));
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Delete(&client_context, request, &response));
}

}  // namespace berth::containers
