#pragma once

// OCI runtime spec generation, as containerd's clients do it (containerd's oci.GenerateSpec with
// its default Unix spec and SpecOpts): a config.json for runc made from an image config and what
// the user asked for on the command line. The berth CLI and C++ integrators use it; execd stores
// whatever spec a client sends and never calls this.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/images/oci.h"
#include "nlohmann/json.hpp"

namespace berth::oci {

// A host path bind-mounted into the container (docker's -v SRC:DST[:ro]).
struct BindMount {
  std::string source;       // absolute host path, no ".." component
  std::string destination;  // absolute container path, no ".." component
  bool read_only = false;
};

struct SpecOptions {
  // The container's id and berth namespace; cgroups_path defaults to "/<ns>/<id>" as
  // containerd's default spec has it.
  std::string id;
  std::string ns = "default";
  std::string cgroups_path;

  // The process, with docker's rules: `entrypoint`, when set (even to an empty list), replaces
  // the image's Entrypoint and drops the image's Cmd; non-empty `args` replace Cmd.
  std::optional<std::vector<std::string>> entrypoint;
  std::vector<std::string> args;
  // "KEY=VALUE" entries applied over the image's Env (same key: replaced; "KEY" alone: removed).
  std::vector<std::string> env;
  std::string working_dir;  // empty: the image's, else "/"
  // "uid", "uid:gid", "name", "name:group" (either side a number or a name); empty: the
  // image's User, else root. Names are looked up in <rootfs_path>/etc/passwd and /etc/group.
  std::string user;
  std::vector<uint32_t> additional_gids;
  // The image's root filesystem on the host, read only for user and group names. Empty: only
  // numeric users work.
  std::string rootfs_path;
  bool terminal = false;
  // With `terminal`, the console's first size (process.consoleSize); 0: the runtime's default.
  // Set it when the caller's terminal size is known, so the process never sees 0x0 before the
  // first ResizePty.
  uint32_t console_height = 0;
  uint32_t console_width = 0;
  std::string hostname;

  // Network: a private namespace by default; the host's with `host_network`; or the existing
  // namespace at `netns_path` (e.g. /var/run/netns/x). Both set is InvalidArgument.
  bool host_network = false;
  std::string netns_path;

  // Limits; 0 means none, negative is InvalidArgument.
  int64_t memory_limit_bytes = 0;
  double cpus = 0;  // CPU quota as a number of CPUs (docker's --cpus): quota = cpus * period
  int64_t pids_limit = 0;

  std::vector<BindMount> binds;
  // Host files bind-mounted read-only at /etc/hosts and /etc/resolv.conf when set (absolute).
  std::string hosts_path;
  std::string resolv_conf_path;

  std::string root_path = "rootfs";  // the bundle-relative (or absolute) rootfs of the spec
  bool readonly_rootfs = false;
  bool seccomp = true;  // Docker's default seccomp profile
  // The architecture the seccomp profile is written for, as OCI images name it (amd64, arm64);
  // empty: this host's.
  std::string arch;
};

// The process user after lookup.
struct ResolvedUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;  // groups from /etc/group that list the user by name
};

// Resolves a user spec (see SpecOptions::user) against the passwd and group files of
// `rootfs_path`. The files are opened inside the root (openat2 RESOLVE_IN_ROOT): a symlink, even
// an absolute one or one climbing with "..", never leads out of it. A name that is not found,
// a malformed spec or a number out of range is InvalidArgument naming it; a missing passwd or
// group file counts as empty.
// Without openat2 (or with kWalk, which tests use to cover that path) the files are reached by
// an O_NOFOLLOW walk that refuses every symlink instead.
enum class RootResolver { kAuto, kWalk };
absl::StatusOr<ResolvedUser> ResolveUser(absl::string_view rootfs_path, absl::string_view user,
                                         RootResolver resolver = RootResolver::kAuto);

// Docker's and containerd's default capability set (bounding = effective = permitted).
std::vector<std::string> DefaultCapabilities();

// Docker's and containerd's default seccomp profile for `arch` (amd64/x86_64 or arm64/aarch64;
// InvalidArgument for others) and the capability bounding set the process gets (some syscalls
// are allowed only with a capability, as in containerd's contrib/seccomp).
absl::StatusOr<nlohmann::json> DefaultSeccompProfile(absl::string_view arch,
                                                     const std::vector<std::string>& caps);

// The OCI runtime spec (config.json) for `image` run with `opts`. InvalidArgument names the
// offending option: an empty command, a relative or ".." bind source or destination, an unknown
// user or group name, a malformed user, negative limits, host network with a netns path.
absl::StatusOr<nlohmann::json> GenerateSpec(const images::ImageConfig& image,
                                            const SpecOptions& opts);

}  // namespace berth::oci
