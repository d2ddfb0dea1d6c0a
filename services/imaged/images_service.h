#pragma once

// imaged's containerd.services.images.v1.Images server over any images::ImageStore (it never
// sees SqliteImageStore's class). Each handler reads the request's context (namespace from
// `containerd-namespace`, else the default), calls the store, and converts the result once.
// As containerd's, a successful Create, Update or Delete publishes /images/create,
// /images/update or /images/delete (containerd.services.images.v1.ImageCreate, ImageUpdate,
// ImageDelete) in the request's namespace; the change is done by then, so a failed publish is
// logged, not returned (the publisher's outbox makes that rare: it fails only when its own
// database does).
//
// Metrics (when a registry is given): `berth_images_records` (records in every namespace),
// refreshed from `count` at construction and after each Create and Delete.
// Thread-safe.

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "containerd/services/images/v1/images.grpc.pb.h"
#include "lib/events/publisher.h"
#include "lib/images/image_store.h"
#include "services/imaged/publishing_image_store.h"

namespace berth::imaged {

struct ImagesServiceOptions {
  std::string default_namespace = "default";
  events::Publisher* publisher = nullptr;  // null: publish nothing
  std::shared_ptr<prometheus::Registry> registry;  // null: no metrics
  std::function<absl::StatusOr<int64_t>()> count;  // records stored; empty: gauge stays 0
};

class ImagesService final : public ::containerd::services::images::v1::Images::Service {
 public:
  // `store` and `options.publisher` must outlive the service.
  ImagesService(images::ImageStore& store, ImagesServiceOptions options);
  ImagesService(const ImagesService&) = delete;
  ImagesService& operator=(const ImagesService&) = delete;

  grpc::Status Get(grpc::ServerContext* server_context,
                   const ::containerd::services::images::v1::GetImageRequest* request,
                   ::containerd::services::images::v1::GetImageResponse* response) override;
  grpc::Status List(grpc::ServerContext* server_context,
                    const ::containerd::services::images::v1::ListImagesRequest* request,
                    ::containerd::services::images::v1::ListImagesResponse* response) override;
  grpc::Status Create(grpc::ServerContext* server_context,
                      const ::containerd::services::images::v1::CreateImageRequest* request,
                      ::containerd::services::images::v1::CreateImageResponse* response) override;
  grpc::Status Update(grpc::ServerContext* server_context,
                      const ::containerd::services::images::v1::UpdateImageRequest* request,
                      ::containerd::services::images::v1::UpdateImageResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* server_context,
                      const ::containerd::services::images::v1::DeleteImageRequest* request,
                      google::protobuf::Empty* response) override;

 private:
  // The request's namespace (its header, else the default), lease and deadline.
  absl::StatusOr<Context> ContextOf(const grpc::ServerContext& server_context) const;
  void RefreshGauge();

  const ImagesServiceOptions options_;
  // With a publisher, the handlers write through a PublishingImageStore over the store.
  std::unique_ptr<PublishingImageStore> publishing_;
  images::ImageStore& store_;
  prometheus::Gauge* records_ = nullptr;  // owned by the registry; null without one
};

}  // namespace berth::imaged
