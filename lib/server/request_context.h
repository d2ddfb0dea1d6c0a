#pragma once

#include "absl/strings/string_view.h"

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "lib/base/context.h"

namespace berth::server {

// The namespace from the `containerd-namespace` metadata header (default_ns when absent, as
// for containerd's proxy clients, and then proxy_consumer set), validated as containerd does
// (InvalidArgument otherwise), the lease from `containerd-lease`, the call's deadline, and a
// cancellation that turns true when the client cancels or goes away. The context is good for the duration of the call (its
// cancellation polls the ServerContext): work that outlives the handler takes ctx.Detached().
absl::StatusOr<Context> ContextFrom(const grpc::ServerContextBase& server_context,
                                    absl::string_view default_ns);

}  // namespace berth::server
