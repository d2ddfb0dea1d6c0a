#include "services/snapshotd/unpack_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_status.h"
#include "lib/diff/proto_convert.h"
#include "lib/server/request_context.h"

namespace berth::snapshotd {

UnpackService::UnpackService(ParallelUnpacker& unpacker, std::string default_namespace)
    : unpacker_(unpacker), default_namespace_(std::move(default_namespace)) {}

grpc::Status UnpackService::Unpack(grpc::ServerContext* server_context,
                                   const ::berth::snapshots::v1::UnpackRequest* request,
                                   ::berth::snapshots::v1::UnpackResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  std::vector<oci::Descriptor> layers;
  layers.reserve(static_cast<size_t>(request->layers_size()));
  for (int i = 0; i < request->layers_size(); ++i) {
    absl::StatusOr<oci::Descriptor> desc = diff::DescriptorFromProto(request->layers(i));
    if (!desc.ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("unpack: layer ", i, " descriptor: ", desc.status().message())));
    }
    layers.push_back(*std::move(desc));
  }
  std::vector<std::string> chain(request->chain().begin(), request->chain().end());
  snapshots::Labels labels(request->labels().begin(), request->labels().end());
  absl::StatusOr<std::vector<oci::Descriptor>> applied =
      unpacker_.Unpack(*ctx, layers, chain, labels);
  if (!applied.ok()) {
    return ToGrpcStatus(applied.status());
  }
  for (const oci::Descriptor& desc : *applied) {
    *response->add_applied() = diff::DescriptorToProto(desc);
  }
  return grpc::Status::OK;
}

}  // namespace berth::snapshotd
