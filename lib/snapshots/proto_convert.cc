#include "lib/snapshots/proto_convert.h"

#include <google/protobuf/util/time_util.h>

namespace berth::snapshots {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp TimeToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

absl::Time TimeFromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

v1::Kind KindToProto(Kind kind) {
  switch (kind) {
    case Kind::kView:
      return v1::VIEW;
    case Kind::kActive:
      return v1::ACTIVE;
    case Kind::kCommitted:
      return v1::COMMITTED;
    case Kind::kUnknown:
      break;
  }
  return v1::UNKNOWN;
}

Kind KindFromProto(v1::Kind kind) {
  switch (kind) {
    case v1::VIEW:
      return Kind::kView;
    case v1::ACTIVE:
      return Kind::kActive;
    case v1::COMMITTED:
      return Kind::kCommitted;
    default:
      return Kind::kUnknown;
  }
}

v1::Info InfoToProto(const Info& info) {
  v1::Info proto;
  proto.set_name(info.name);
  proto.set_parent(info.parent);
  proto.set_kind(KindToProto(info.kind));
  *proto.mutable_created_at() = TimeToProto(info.created_at);
  *proto.mutable_updated_at() = TimeToProto(info.updated_at);
  proto.mutable_labels()->insert(info.labels.begin(), info.labels.end());
  return proto;
}

Info InfoFromProto(const v1::Info& proto) {
  Info info;
  info.name = proto.name();
  info.parent = proto.parent();
  info.kind = KindFromProto(proto.kind());
  info.created_at = TimeFromProto(proto.created_at());
  info.updated_at = TimeFromProto(proto.updated_at());
  info.labels.insert(proto.labels().begin(), proto.labels().end());
  return info;
}

::containerd::types::Mount MountToProto(const mount::Mount& m) {
  ::containerd::types::Mount proto;
  proto.set_type(m.type);
  proto.set_source(m.source);
  proto.set_target(m.target);
  for (const std::string& option : m.options) {
    proto.add_options(option);
  }
  return proto;
}

mount::Mount MountFromProto(const ::containerd::types::Mount& proto) {
  mount::Mount m;
  m.type = proto.type();
  m.source = proto.source();
  m.target = proto.target();
  m.options.assign(proto.options().begin(), proto.options().end());
  return m;
}

void MountsToProto(const std::vector<mount::Mount>& mounts,
                   google::protobuf::RepeatedPtrField<::containerd::types::Mount>* out) {
  for (const mount::Mount& m : mounts) {
    *out->Add() = MountToProto(m);
  }
}

std::vector<mount::Mount> MountsFromProto(
    const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& protos) {
  std::vector<mount::Mount> mounts;
  mounts.reserve(static_cast<size_t>(protos.size()));
  for (const ::containerd::types::Mount& proto : protos) {
    mounts.push_back(MountFromProto(proto));
  }
  return mounts;
}

}  // namespace berth::snapshots
