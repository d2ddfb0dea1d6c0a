#pragma once

// Conversions between the image contract's Image and containerd's images v1 Image message,
// shared by imaged's Images service and GrpcImageStore. The only place these messages are
// built or read.

#include "absl/status/statusor.h"
#include "containerd/services/images/v1/images.pb.h"
#include "lib/images/image_store.h"

namespace berth::images {

::containerd::services::images::v1::Image ImageToProto(const Image& image);

// An empty target digest is the empty Digest (an Update of labels alone sends no target; a
// Create without one is refused by ValidateImage); a malformed one is InvalidArgument.
absl::StatusOr<Image> ImageFromProto(const ::containerd::services::images::v1::Image& proto);

}  // namespace berth::images
