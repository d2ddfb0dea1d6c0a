#include "lib/images/proto_convert.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/content/proto_convert.h"
#include "lib/diff/proto_convert.h"

namespace berth::images {

namespace v1 = ::containerd::services::images::v1;

v1::Image ImageToProto(const Image& image) {
  v1::Image proto;
  proto.set_name(image.name);
  proto.mutable_labels()->insert(image.labels.begin(), image.labels.end());
  *proto.mutable_target() = diff::DescriptorToProto(image.target);
  *proto.mutable_created_at() = content::TimeToProto(image.created_at);
  *proto.mutable_updated_at() = content::TimeToProto(image.updated_at);
  return proto;
}

absl::StatusOr<Image> ImageFromProto(const v1::Image& proto) {
  Image image;
  image.name = proto.name();
  image.labels.insert(proto.labels().begin(), proto.labels().end());
  const ::containerd::types::Descriptor& target = proto.target();
  if (!target.digest().empty()) {
    absl::StatusOr<Digest> digest = Digest::Parse(target.digest());
    if (!digest.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image \"", proto.name(), "\": target digest: ", digest.status().message()));
    }
    image.target.digest = *std::move(digest);
  }
  image.target.media_type = target.media_type();
  image.target.size = target.size();
  image.target.annotations.insert(target.annotations().begin(), target.annotations().end());
  image.created_at = content::TimeFromProto(proto.created_at());
  image.updated_at = content::TimeFromProto(proto.updated_at());
  return image;
}

}  // namespace berth::images
