#pragma once

// Conversions between the snapshot contract's types and containerd's snapshots v1 and
// containerd.types.Mount messages, shared by snapshotd's Snapshots service, the Diff service
// and client, and GrpcSnapshotter. The only place these messages are built or read.

#include <google/protobuf/timestamp.pb.h>

#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "containerd/services/snapshots/v1/snapshots.pb.h"
#include "containerd/types/mount.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/snapshotter.h"

namespace berth::snapshots {

namespace v1 = ::containerd::services::snapshots::v1;

// absl::UnixEpoch() <-> the zero Timestamp; nanosecond precision both ways.
google::protobuf::Timestamp TimeToProto(absl::Time t);
absl::Time TimeFromProto(const google::protobuf::Timestamp& ts);

v1::Kind KindToProto(Kind kind);
// Values outside the enum become kUnknown.
Kind KindFromProto(v1::Kind kind);

v1::Info InfoToProto(const Info& info);
Info InfoFromProto(const v1::Info& proto);

::containerd::types::Mount MountToProto(const mount::Mount& m);
mount::Mount MountFromProto(const ::containerd::types::Mount& proto);

// Appends every mount to `out`.
void MountsToProto(const std::vector<mount::Mount>& mounts,
                   google::protobuf::RepeatedPtrField<::containerd::types::Mount>* out);
std::vector<mount::Mount> MountsFromProto(
    const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& protos);

}  // namespace berth::snapshots
