#include "lib/leases/proto_convert.h"

#include <google/protobuf/util/time_util.h>

namespace berth::leases {

using google::protobuf::util::TimeUtil;

v1::Lease LeaseToProto(const Lease& lease) {
  v1::Lease proto;
  proto.set_id(lease.id);
  *proto.mutable_created_at() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(lease.created_at));
  proto.mutable_labels()->insert(lease.labels.begin(), lease.labels.end());
  return proto;
}

Lease LeaseFromProto(const v1::Lease& proto) {
  Lease lease;
  lease.id = proto.id();
  lease.created_at = absl::FromUnixSeconds(proto.created_at().seconds()) +
                     absl::Nanoseconds(proto.created_at().nanos());
  lease.labels.insert(proto.labels().begin(), proto.labels().end());
  return lease;
}

v1::Resource ResourceToProto(const Resource& resource) {
  v1::Resource proto;
  proto.set_id(resource.id);
  proto.set_type(resource.type);
  return proto;
}

Resource ResourceFromProto(const v1::Resource& proto) { return Resource{proto.id(), proto.type()}; }

}  // namespace berth::leases
