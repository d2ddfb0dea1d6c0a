#include "lib/images/grpc_image_store.h"

#include <string>
#include <utility>

#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/base/status_macros.h"
#include "lib/images/proto_convert.h"

namespace berth::images {

namespace v1 = ::containerd::services::images::v1;

GrpcImageStore::GrpcImageStore(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(v1::Images::NewStub(channel_)) {}

absl::StatusOr<Image> GrpcImageStore::Get(const Context& ctx, absl::string_view name) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::GetImageRequest request;
  request.set_name(std::string(name));
  v1::GetImageResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->Get(&client_context, request, &response)));
  return ImageFromProto(response.image());
}

absl::StatusOr<std::vector<Image>> GrpcImageStore::List(const Context& ctx,
                                                        const std::vector<std::string>& filters) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ListImagesRequest request;
  request.mutable_filters()->Add(filters.begin(), filters.end());
  v1::ListImagesResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->List(&client_context, request, &response)));
  std::vector<Image> images;
  for (const v1::Image& proto : response.images()) {
    BERTH_ASSIGN_OR_RETURN(Image image, ImageFromProto(proto));
    images.push_back(std::move(image));
  }
  return images;
}

absl::StatusOr<Image> GrpcImageStore::Create(const Context& ctx, const Image& image) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::CreateImageRequest request;
  *request.mutable_image() = ImageToProto(image);
  v1::CreateImageResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->Create(&client_context, request, &response)));
  return ImageFromProto(response.image());
}

absl::StatusOr<Image> GrpcImageStore::Update(const Context& ctx, const Image& image,
                                             const std::vector<std::string>& fieldpaths) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UpdateImageRequest request;
  *request.mutable_image() = ImageToProto(image);
  if (!fieldpaths.empty()) {
    request.mutable_update_mask()->mutable_paths()->Add(fieldpaths.begin(), fieldpaths.end());
  }
  v1::UpdateImageResponse response;
  BERTH_RETURN_IF_ERROR(FromGrpcStatus(stub_->Update(&client_context, request, &response)));
  return ImageFromProto(response.image());
}

absl::Status GrpcImageStore::Delete(const Context& ctx, absl::string_view name, bool sync) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::DeleteImageRequest request;
  request.set_name(std::string(name));
  request.set_sync(sync);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Delete(&client_context, request, &response));
}

}  // namespace berth::images
