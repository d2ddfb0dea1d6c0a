#pragma once

// Conversions between oci::Descriptor and containerd.types.Descriptor, shared by snapshotd's
// Diff service and GrpcDiff. (Mounts convert in lib/snapshots/proto_convert.h.)

#include "absl/status/statusor.h"
#include "containerd/types/descriptor.pb.h"
#include "lib/oci/descriptor.h"

namespace berth::diff {

::containerd::types::Descriptor DescriptorToProto(const oci::Descriptor& desc);
// InvalidArgument if the digest is malformed (an empty digest is malformed too).
absl::StatusOr<oci::Descriptor> DescriptorFromProto(const ::containerd::types::Descriptor& proto);

}  // namespace berth::diff
