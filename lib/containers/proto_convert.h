#pragma once

// Conversions between the container contract's Container and containerd's containers v1
// Container message, shared by execd's Containers service and GrpcContainerStore. The only
// place these messages are built or read. Every Any is copied byte for byte.

#include "containerd/services/containers/v1/containers.pb.h"
#include "lib/containers/container_store.h"

namespace berth::containers {

::containerd::services::containers::v1::Container ContainerToProto(const Container& container);
Container ContainerFromProto(const ::containerd::services::containers::v1::Container& proto);

}  // namespace berth::containers
