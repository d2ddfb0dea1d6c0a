#include "lib/diff/grpc_diff.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/diff/proto_convert.h"
#include "lib/snapshots/proto_convert.h"

namespace berth::diff {
namespace {

namespace v1 = ::containerd::services::diff::v1;

// A server's descriptor that does not parse is the server's fault, not the caller's input.
absl::StatusOr<oci::Descriptor> ResponseDescriptor(const char* what,
                                                   const ::containerd::types::Descriptor& proto) {
  absl::StatusOr<oci::Descriptor> desc = DescriptorFromProto(proto);
  if (!desc.ok()) {
    return absl::DataLossError(
        absl::StrCat(what, ": the server returned a bad descriptor: ", desc.status().message()));
  }
  return desc;
}

}  // namespace

GrpcDiff::GrpcDiff(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(v1::Diff::NewStub(channel_)) {}

absl::StatusOr<oci::Descriptor> GrpcDiff::Apply(const Context& ctx, const oci::Descriptor& desc,
                                                const std::vector<mount::Mount>& mounts) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ApplyRequest request;
  *request.mutable_diff() = DescriptorToProto(desc);
  snapshots::MountsToProto(mounts, request.mutable_mounts());
  v1::ApplyResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Apply(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return ResponseDescriptor("apply", response.applied());
}

absl::StatusOr<oci::Descriptor> GrpcDiff::Compare(const Context& ctx,
                                                  const std::vector<mount::Mount>& lower,
                                                  const std::vector<mount::Mount>& upper,
                                                  const CompareOptions& options) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::DiffRequest request;
  snapshots::MountsToProto(lower, request.mutable_left());
  snapshots::MountsToProto(upper, request.mutable_right());
  request.set_media_type(options.media_type);
  request.set_ref(options.ref);
  request.mutable_labels()->insert(options.labels.begin(), options.labels.end());
  v1::DiffResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Diff(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return ResponseDescriptor("diff", response.diff());
}

}  // namespace berth::diff
