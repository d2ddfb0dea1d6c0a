#include "lib/content/proto_convert.h"

#include <google/protobuf/util/time_util.h>

namespace berth::content {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp TimeToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

absl::Time TimeFromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

v1::Info InfoToProto(const Info& info) {
  v1::Info proto;
  proto.set_digest(info.digest.ToString());
  proto.set_size(info.size);
  *proto.mutable_created_at() = TimeToProto(info.created_at);
  *proto.mutable_updated_at() = TimeToProto(info.updated_at);
  proto.mutable_labels()->insert(info.labels.begin(), info.labels.end());
  return proto;
}

absl::StatusOr<Info> InfoFromProto(const v1::Info& proto) {
  absl::StatusOr<Digest> digest = Digest::Parse(proto.digest());
  if (!digest.ok()) {
    return digest.status();
  }
  Info info;
  info.digest = *std::move(digest);
  info.size = proto.size();
  info.created_at = TimeFromProto(proto.created_at());
  info.updated_at = TimeFromProto(proto.updated_at());
  info.labels.insert(proto.labels().begin(), proto.labels().end());
  return info;
}

v1::Status StatusToProto(const IngestStatus& status) {
  v1::Status proto;
  *proto.mutable_started_at() = TimeToProto(status.started_at);
  *proto.mutable_updated_at() = TimeToProto(status.updated_at);
  proto.set_ref(status.ref);
  proto.set_offset(status.offset);
  proto.set_total(status.total);
  proto.set_expected(status.expected.ToString());
  return proto;
}

absl::StatusOr<IngestStatus> StatusFromProto(const v1::Status& proto) {
  absl::StatusOr<Digest> expected = OptionalDigestFromProto(proto.expected());
  if (!expected.ok()) {
    return expected.status();
  }
  IngestStatus status;
  status.ref = proto.ref();
  status.offset = proto.offset();
  status.total = proto.total();
  status.expected = *std::move(expected);
  status.started_at = TimeFromProto(proto.started_at());
  status.updated_at = TimeFromProto(proto.updated_at());
  return status;
}

absl::StatusOr<Digest> OptionalDigestFromProto(const std::string& text) {
  if (text.empty()) {
    return Digest();
  }
  return Digest::Parse(text);
}

}  // namespace berth::content
