#pragma once

// The few POSIX steps every daemon repeats, each returning absl::Status with the errno's
// category (absl::ErrnoToStatus's mapping: ENOENT NotFound, EEXIST AlreadyExists, EACCES and
// EPERM PermissionDenied, ENOSPC ResourceExhausted, ...) and a message naming the path.

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth {

// "<what>: <strerror(err)>", its code from the errno. The one errno conversion in berth.
absl::Status ErrnoStatus(int err, absl::string_view what);

// mkdir -p: creates `path` and its missing parents. The last component gets `mode`, missing
// parents `parent_mode` (0711 by default: traversable, not listable). An existing directory is
// left as it is; an existing non-directory is FailedPrecondition. `path` must not be empty.
absl::Status MakeDirs(const std::string& path, mode_t mode, mode_t parent_mode = 0711);

// fsync of a directory, so a rename or create inside it survives a crash.
absl::Status FsyncDir(const std::string& path);

// How far a write must have reached before it returns: kDurable survives a power loss (fsync of
// the file and of its directory); kVolatile only a crash of the process (the page cache keeps
// it), for files that are made again when lost (a task's bundle in the state dir).
enum class Durability { kDurable, kVolatile };

// Replaces `path` with `data` so that a crash at any point leaves either the old file or the
// whole new one: writes <path>.tmp-<random>, fsyncs it (kDurable), renames it over `path`,
// fsyncs the directory (kDurable). The temporary file is removed on failure. `mode` is the new
// file's mode.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode,
                             Durability durability = Durability::kDurable);

// The whole content of `path`.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Everything left to read from `fd` (not closed); `what` names it in errors. More than
// `max_size` bytes is InvalidArgument (for files an untrusted party controls).
absl::StatusOr<std::string> ReadAll(int fd, absl::string_view what,
                                    size_t max_size = static_cast<size_t>(-1));

}  // namespace berth
