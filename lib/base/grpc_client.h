#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "lib/base/context.h"

namespace berth {

// A channel to a daemon. `address` is a unix socket path ("/run/berth/contentd.sock"), or any
// gRPC target ("unix:/path", "127.0.0.1:1234"). Messages up to 64 MiB each way.
std::shared_ptr<grpc::Channel> Dial(const std::string& address);

// As Dial, but with a connection of its own: gRPC otherwise shares one connection between the
// channels of a process that dial the same address, so a failed connect from a one-off call
// (a start-up task while the peer is not up yet) would put every channel to that peer into
// reconnect backoff, failing the next real calls fast.
std::shared_ptr<grpc::Channel> DialOwnConnection(const std::string& address);

// Sends ctx the way containerd's clients do: `containerd-namespace` (if not empty) and
// `containerd-lease` (if not empty) metadata headers; ctx's deadline (if any) becomes the
// call's, so the server sees it too. Cancellation is the caller's to act on: a streaming
// client checks ctx.Alive() between messages and calls TryCancel.
void ApplyContext(const Context& ctx, grpc::ClientContext* client_context);

}  // namespace berth
