#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace berth {

// The one place errors cross the wire. absl's codes are gRPC's codes, so the mapping is 1:1 and
// the message travels unchanged; containerd's errdefs map the same codes back to its errors.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace berth
