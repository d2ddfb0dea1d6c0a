#pragma once

// Conversions between the leases contract's types and containerd's leases v1 messages, shared
// by contentd's Leases service and GrpcLeaseManager.

#include "containerd/services/leases/v1/leases.pb.h"
#include "lib/leases/lease_manager.h"

namespace berth::leases {

namespace v1 = ::containerd::services::leases::v1;

v1::Lease LeaseToProto(const Lease& lease);
Lease LeaseFromProto(const v1::Lease& proto);

v1::Resource ResourceToProto(const Resource& resource);
Resource ResourceFromProto(const v1::Resource& proto);

}  // namespace berth::leases
