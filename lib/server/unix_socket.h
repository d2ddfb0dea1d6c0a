#pragma once

// The daemon's listening socket: made safe to bind, or taken from systemd. Internal to
// berth_server (daemon.cc).

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::server {

// Makes `path` free for a new socket: refuses a relative or over-long path, an existing
// non-socket (symlinks included) and a socket some process accepts on (FailedPrecondition);
// removes a stale socket. Creates missing parent directories (0711).
absl::Status PrepareSocketPath(const std::string& path);

// The listening unix stream socket systemd passed (LISTEN_FDS), -1 when there is none. With
// several, the one bound to `address` wins, else the first unix stream socket.
absl::StatusOr<int> SocketFromSystemd(const std::string& address);

}  // namespace berth::server
