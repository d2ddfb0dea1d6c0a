#pragma once

// An images::ImageStore backed by an imaged (or any containerd Images service) over gRPC.
// Code holding an ImageStore& cannot tell it from imaged's SqliteImageStore: both pass
// image_store_testsuite.h. Each call sends ctx as the `containerd-namespace` and
// `containerd-lease` headers and ctx's deadline as the call's; server errors come back with
// their code and message unchanged, transport failures are Unavailable. Thread-safe.
//
//   berth::images::GrpcImageStore images(berth::Dial("/run/berth/imaged.sock"));
//   auto image = images.Get({"default", ""}, "docker.io/library/alpine:3.19");

#include <grpcpp/grpcpp.h>

#include <memory>

#include "containerd/services/images/v1/images.grpc.pb.h"
#include "lib/images/image_store.h"

namespace berth::images {

class GrpcImageStore : public ImageStore {
 public:
  explicit GrpcImageStore(std::shared_ptr<grpc::Channel> channel);
  GrpcImageStore(const GrpcImageStore&) = delete;
  GrpcImageStore& operator=(const GrpcImageStore&) = delete;

  absl::StatusOr<Image> Get(const Context& ctx, absl::string_view name) override;
  // The server filters (the filters travel as given).
  absl::StatusOr<std::vector<Image>> List(const Context& ctx,
                                          const std::vector<std::string>& filters) override;
  absl::StatusOr<Image> Create(const Context& ctx, const Image& image) override;
  // An empty `fieldpaths` sends no update_mask, which the server reads as "replace all".
  absl::StatusOr<Image> Update(const Context& ctx, const Image& image,
                               const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const Context& ctx, absl::string_view name, bool sync) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::images::v1::Images::Stub> stub_;
};

}  // namespace berth::images
