#include "lib/snapshots/grpc_unpacker.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"

namespace berth::snapshots {
namespace {

namespace v1 = ::berth::snapshots::v1;

// (lib/diff/proto_convert.h has the same conversions, but berth_diff depends on this library.)
::containerd::types::Descriptor ToProto(const oci::Descriptor& desc) {
  ::containerd::types::Descriptor proto;
  proto.set_media_type(desc.media_type);
  proto.set_digest(desc.digest.ToString());
  proto.set_size(desc.size);
  proto.mutable_annotations()->insert(desc.annotations.begin(), desc.annotations.end());
  return proto;
}

}  // namespace

GrpcUnpacker::GrpcUnpacker(std::shared_ptr<grpc::Channel> channel, std::string snapshotter_name)
    : channel_(std::move(channel)),
      stub_(v1::Unpacker::NewStub(channel_)),
      name_(std::move(snapshotter_name)) {}

absl::StatusOr<std::vector<oci::Descriptor>> GrpcUnpacker::Unpack(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const Labels& labels,
    const UnpackProgressFn& progress) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UnpackRequest request;
  request.set_snapshotter(name_);
  for (const oci::Descriptor& layer : layers) {
    *request.add_layers() = ToProto(layer);
  }
  for (const std::string& name : chain) {
    request.add_chain(name);
  }
  request.mutable_labels()->insert(labels.begin(), labels.end());
  v1::UnpackResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Unpack(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  std::vector<oci::Descriptor> applied;
  applied.reserve(static_cast<size_t>(response.applied_size()));
  for (const ::containerd::types::Descriptor& proto : response.applied()) {
    oci::Descriptor desc;
    desc.media_type = proto.media_type();
    if (!proto.digest().empty()) {
      absl::StatusOr<Digest> digest = Digest::Parse(proto.digest());
      if (!digest.ok()) {
        return absl::DataLossError(absl::StrCat("unpack: the server returned a bad digest: ",
                                                digest.status().message()));
      }
      desc.digest = *std::move(digest);
    }
    desc.size = proto.size();
    desc.annotations.insert(proto.annotations().begin(), proto.annotations().end());
    applied.push_back(std::move(desc));
  }
  if (progress) {
    for (size_t i = 0; i < applied.size(); ++i) {
      UnpackProgress p;
      p.layer = i;
      p.state = applied[i].size == 0 ? UnpackProgress::State::kReused
                                     : UnpackProgress::State::kApplied;
      p.applied = applied[i];
      progress(p);
    }
  }
  return applied;
}

}  // namespace berth::snapshots
