#include "lib/server/unix_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <systemd/sd-daemon.h>

#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"

namespace berth::server {

absl::Status PrepareSocketPath(const std::string& path) {
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path \"", path, "\" must be an absolute path"));
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is longer than ",
                                                   sizeof(sockaddr_un::sun_path) - 1,
                                                   " bytes"));
  }
  std::string parent = path.substr(0, path.rfind('/'));
  if (!parent.empty()) {
    BERTH_RETURN_IF_ERROR(MakeDirs(parent, 0711, 0711));
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::OkStatus();
    }
    return ErrnoStatus(errno, absl::StrCat("socket path ", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket path ", path, " exists and is not a socket; refusing to replace it"));
  }
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) {
    return ErrnoStatus(errno, "socket");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.data(), path.size());
  int rc;
  do {
    rc = connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc == 0 || errno == EAGAIN) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket path ", path, " is in use: another process accepts connections on it"));
  }
  if (errno != ECONNREFUSED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket path ", path, ": cannot tell whether it is in use: ", strerror(errno)));
  }
  BERTH_LOG(Info) << "removing stale socket " << path;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("remove stale socket ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> SocketFromSystemd(const std::string& address) {
  int n = sd_listen_fds(1);
  if (n < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket activation (LISTEN_FDS): ", strerror(-n)));
  }
  int chosen = -1;
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) {
    if (!address.empty() && sd_is_socket_unix(fd, SOCK_STREAM, 1, address.c_str(), 0) > 0) {
      chosen = fd;
      break;
    }
    if (chosen < 0 && sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 1) > 0) {
      chosen = fd;
    }
  }
  if (n > 0 && chosen < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket activation: none of the ", n, " sockets passed is a listening unix socket"));
  }
  return chosen;
}

}  // namespace berth::server
