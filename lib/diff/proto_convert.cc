#include "lib/diff/proto_convert.h"

#include <utility>

namespace berth::diff {

::containerd::types::Descriptor DescriptorToProto(const oci::Descriptor& desc) {
  ::containerd::types::Descriptor proto;
  proto.set_media_type(desc.media_type);
  proto.set_digest(desc.digest.ToString());
  proto.set_size(desc.size);
  proto.mutable_annotations()->insert(desc.annotations.begin(), desc.annotations.end());
  return proto;
}

absl::StatusOr<oci::Descriptor> DescriptorFromProto(const ::containerd::types::Descriptor& proto) {
  absl::StatusOr<Digest> digest = Digest::Parse(proto.digest());
  if (!digest.ok()) {
    return digest.status();
  }
  oci::Descriptor desc;
  desc.media_type = proto.media_type();
  desc.digest = *std::move(digest);
  desc.size = proto.size();
  desc.annotations.insert(proto.annotations().begin(), proto.annotations().end());
  return desc;
}

}  // namespace berth::diff
