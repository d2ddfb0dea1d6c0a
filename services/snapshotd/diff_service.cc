#include "services/snapshotd/diff_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_status.h"
#include "lib/diff/proto_convert.h"
#include "lib/server/request_context.h"
#include "lib/snapshots/proto_convert.h"

namespace berth::snapshotd {
namespace {

namespace v1 = ::containerd::services::diff::v1;

}  // namespace

DiffService::DiffService(diff::Applier& applier, diff::Comparer& comparer,
                         std::string default_namespace)
    : applier_(applier), comparer_(comparer), default_namespace_(std::move(default_namespace)) {}

grpc::Status DiffService::Apply(grpc::ServerContext* server_context,
                                const v1::ApplyRequest* request, v1::ApplyResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (!request->payloads().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("apply: payloads (stream processors) are not supported, got ",
                     request->payloads().size())));
  }
  absl::StatusOr<oci::Descriptor> desc = diff::DescriptorFromProto(request->diff());
  if (!desc.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("apply: layer descriptor: ", desc.status().message())));
  }
  if (request->mounts().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("apply: mounts are required"));
  }
  absl::StatusOr<oci::Descriptor> applied =
      applier_.Apply(*ctx, *desc, snapshots::MountsFromProto(request->mounts()));
  if (!applied.ok()) {
    return ToGrpcStatus(applied.status());
  }
  *response->mutable_applied() = diff::DescriptorToProto(*applied);
  return grpc::Status::OK;
}

grpc::Status DiffService::Diff(grpc::ServerContext* server_context,
                               const v1::DiffRequest* request, v1::DiffResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (request->right().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("diff: right (upper) mounts are required"));
  }
  diff::CompareOptions options;
  options.media_type = request->media_type();
  options.ref = request->ref();
  options.labels.insert(request->labels().begin(), request->labels().end());
  absl::StatusOr<oci::Descriptor> written =
      comparer_.Compare(*ctx, snapshots::MountsFromProto(request->left()),
                        snapshots::MountsFromProto(request->right()), options);
  if (!written.ok()) {
    return ToGrpcStatus(written.status());
  }
  *response->mutable_diff() = diff::DescriptorToProto(*written);
  return grpc::Status::OK;
}

}  // namespace berth::snapshotd
