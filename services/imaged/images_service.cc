#include "services/imaged/images_service.h"

#include <utility>
#include <vector>

#include "containerd/events/image.pb.h"
#include "lib/base/grpc_status.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/images/proto_convert.h"
#include "lib/server/request_context.h"

namespace berth::imaged {
namespace {

namespace v1 = ::containerd::services::images::v1;
using images::Image;

std::vector<std::string> FieldPaths(const v1::UpdateImageRequest& request) {
  return {request.update_mask().paths().begin(), request.update_mask().paths().end()};
}

}  // namespace

ImagesService::ImagesService(images::ImageStore& store, ImagesServiceOptions options)
    : options_(std::move(options)),
      publishing_(options_.publisher == nullptr
                      ? nullptr
                      : std::make_unique<PublishingImageStore>(store, *options_.publisher)),
      store_(publishing_ != nullptr ? *publishing_ : store) {
  if (options_.registry != nullptr) {
    records_ = &prometheus::BuildGauge()
                    .Name("berth_images_records")
                    .Help("Image records imaged holds, in every namespace")
                    .Register(*options_.registry)
                    .Add({});
  }
  RefreshGauge();
}

grpc::Status ImagesService::Get(grpc::ServerContext* server_context,
                                const v1::GetImageRequest* request,
                                v1::GetImageResponse* response) {
  absl::StatusOr<Image> image = [&]() -> absl::StatusOr<Image> {
    BERTH_ASSIGN_OR_RETURN(Context ctx, ContextOf(*server_context));
    return store_.Get(ctx, request->name());
  }();
  if (!image.ok()) {
    return ToGrpcStatus(image.status());
  }
  *response->mutable_image() = images::ImageToProto(*image);
  return grpc::Status::OK;
}

grpc::Status ImagesService::List(grpc::ServerContext* server_context,
                                 const v1::ListImagesRequest* request,
                                 v1::ListImagesResponse* response) {
  absl::StatusOr<std::vector<Image>> list = [&]() -> absl::StatusOr<std::vector<Image>> {
    BERTH_ASSIGN_OR_RETURN(Context ctx, ContextOf(*server_context));
    return store_.List(ctx, {request->filters().begin(), request->filters().end()});
  }();
  if (!list.ok()) {
    return ToGrpcStatus(list.status());
  }
  for (const Image& image : *list) {
    *response->add_images() = images::ImageToProto(image);
  }
  return grpc::Status::OK;
}

grpc::Status ImagesService::Create(grpc::ServerContext* server_context,
                                   const v1::CreateImageRequest* request,
                                   v1::CreateImageResponse* response) {
  absl::StatusOr<Image> created = [&]() -> absl::StatusOr<Image> {
    BERTH_ASSIGN_OR_RETURN(Context ctx, ContextOf(*server_context));
    BERTH_ASSIGN_OR_RETURN(Image image, images::ImageFromProto(request->image()));
    return store_.Create(ctx, image);
  }();
  if (!created.ok()) {
    return ToGrpcStatus(created.status());
  }
  RefreshGauge();
  *response->mutable_image() = images::ImageToProto(*created);
  return grpc::Status::OK;
}

grpc::Status ImagesService::Update(grpc::ServerContext* server_context,
                                   const v1::UpdateImageRequest* request,
                                   v1::UpdateImageResponse* response) {
  absl::StatusOr<Image> updated = [&]() -> absl::StatusOr<Image> {
    BERTH_ASSIGN_OR_RETURN(Context ctx, ContextOf(*server_context));
    BERTH_ASSIGN_OR_RETURN(Image image, images::ImageFromProto(request->image()));
    return store_.Update(ctx, image, FieldPaths(*request));
  }();
  if (!updated.ok()) {
    return ToGrpcStatus(updated.status());
  }
  *response->mutable_image() = images::ImageToProto(*updated);
  return grpc::Status::OK;
}

grpc::Status ImagesService::Delete(grpc::ServerContext* server_context,
                                   const v1::DeleteImageRequest* request,
                                   google::protobuf::Empty* response) {
  absl::Status deleted = [&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(Context ctx, ContextOf(*server_context));
    return store_.Delete(ctx, request->name(), request->sync());
  }();
  if (!deleted.ok()) {
    return ToGrpcStatus(deleted);
  }
  RefreshGauge();
  return grpc::Status::OK;
}

absl::StatusOr<Context> ImagesService::ContextOf(const grpc::ServerContext& server_context) const {
  return server::ContextFrom(server_context, options_.default_namespace);
}

void ImagesService::RefreshGauge() {
  if (records_ == nullptr || !options_.count) {
    return;
  }
  absl::StatusOr<int64_t> count = options_.count();
  if (count.ok()) {
    records_->Set(static_cast<double>(*count));
  }
}

}  // namespace berth::imaged
