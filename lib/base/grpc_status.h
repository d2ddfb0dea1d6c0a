#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace berth {

// The one place errors cross the wire. absl's codes are gRPC's codes, so the mapping is 1:1 and
// the message travels unchanged; containerd's errdefs map the same codes back to its errors.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Whether a call that failed with `code` fails again however often it is retried: the request
// itself is wrong, not allowed or not served (InvalidArgument, Unimplemented, PermissionDenied,
// Unauthenticated, FailedPrecondition, OutOfRange). Unavailable, DeadlineExceeded and the rest
// may pass later.
bool RetryCannotHelp(grpc::StatusCode code);

}  // namespace berth
