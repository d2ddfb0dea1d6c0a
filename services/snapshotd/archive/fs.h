#pragma once

// Filesystem primitives for extracting layers without ever leaving a root directory. Every path
// handed in here is a layer's (untrusted) name; it is resolved inside the root by the kernel
// (openat2 RESOLVE_IN_ROOT), or, where openat2 is missing, by a component-by-component
// O_NOFOLLOW walk with the same semantics. Never by string checks alone.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/unique_fd.h"

namespace berth::snapshotd::archive {

// A tar entry name as components inside the root: a leading '/' is dropped, "." and empty
// components vanish, ".." removes the previous component and never climbs above the root (as
// if the name were joined to "/" and cleaned). An empty result names the root itself.
std::vector<std::string> CleanComponents(absl::string_view name);
std::string JoinComponents(const std::vector<std::string>& components, size_t count);

enum class Resolver {
  kAuto,      // openat2 when the kernel has it, else the walk
  kOpenat2,   // openat2 only (ENOSYS is an error)
  kWalk,      // the component walk only (tests use it to cover the fallback)
};

struct ResolveFlags {
  // Symlinks anywhere in the path are an error (ELOOP) instead of being followed inside the
  // root. Hardlink targets use this.
  bool no_symlinks = false;
  // The last component may be a symlink: with false it is not followed (O_NOFOLLOW: ELOOP for
  // anything but O_PATH, which then refers to the link itself).
  bool follow_last = true;
};

// Opens `path` (components relative to the root) with open(2) `flags` (O_CLOEXEC is added),
// resolving every symlink as if `root_fd` were "/" (absolute targets and ".." stay inside).
// Magic links (/proc/self/fd/...) are never followed. Errors keep the errno in the message and
// are PathErrnoStatus's.
absl::StatusOr<UniqueFd> OpenInRoot(int root_fd, const std::vector<std::string>& path,
                                    size_t count, int flags, ResolveFlags resolve,
                                    Resolver resolver = Resolver::kAuto);

// As OpenInRoot but returns the raw errno on failure (0 on success), for callers that branch
// on ENOENT.
int OpenInRootErrno(int root_fd, const std::vector<std::string>& path, size_t count,
                    int flags, ResolveFlags resolve, Resolver resolver, UniqueFd* out);

// Whether openat2 works on this kernel (cached).
bool HaveOpenat2();

// Removes `name` in directory `dir_fd`, recursively when it is a directory, never following a
// symlink. It does not look for mount points: the trees it runs on (a snapshot's directory,
// unmounted) have none. Missing: OK.
absl::Status RemoveAllAt(int dir_fd, const std::string& name);

// The names in directory `dir_fd` (not "." or ".."), unsorted.
absl::StatusOr<std::vector<std::string>> ListDir(int dir_fd);

// berth::ErrnoStatus, except that ELOOP and EXDEV (a path that would leave the root, or a
// symlink where none may be) are InvalidArgument: the layer's fault, not the disk's.
absl::Status PathErrnoStatus(int err, absl::string_view what);

}  // namespace berth::snapshotd::archive
