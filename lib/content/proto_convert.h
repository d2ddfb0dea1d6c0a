#pragma once

// Conversions between the content contract's types and containerd's content v1 messages,
// shared by contentd's Content service and GrpcContentStore. The only place these messages
// are built or read.

#include <google/protobuf/timestamp.pb.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "containerd/services/content/v1/content.pb.h"
#include "lib/content/content_store.h"

namespace berth::content {

namespace v1 = ::containerd::services::content::v1;

// absl::UnixEpoch() <-> the zero Timestamp; nanosecond precision both ways.
google::protobuf::Timestamp TimeToProto(absl::Time t);
absl::Time TimeFromProto(const google::protobuf::Timestamp& ts);

v1::Info InfoToProto(const Info& info);
// InvalidArgument if the digest is malformed (an empty digest is malformed too).
absl::StatusOr<Info> InfoFromProto(const v1::Info& proto);

v1::Status StatusToProto(const IngestStatus& status);
// InvalidArgument if `expected` is set and malformed.
absl::StatusOr<IngestStatus> StatusFromProto(const v1::Status& proto);

// An optional digest on the wire: "" is the empty Digest, anything else must parse.
absl::StatusOr<Digest> OptionalDigestFromProto(const std::string& text);

}  // namespace berth::content
