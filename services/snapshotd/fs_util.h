#pragma once

// Filesystem helpers for the local snapshotters: disk usage, a faithful tree copy (the native
// snapshotter's layers) and a tree removal that never crosses into a mount.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::snapshotd {

struct DiskUsage {
  int64_t size = 0;    // st_blocks * 512 over distinct inodes
  int64_t inodes = 0;  // distinct inodes, `root` included
};

// Usage of the tree at `root` (not following symlinks, not crossing filesystems).
absl::StatusOr<DiskUsage> ComputeDiskUsage(const std::string& root);

// Copies the contents of directory `src` into the existing directory `dst`, keeping file types
// (regular, directory, symlink, fifo, socket, character and block devices), modes (setuid and
// sticky bits included), owners, access and modification times, extended attributes (where the
// destination filesystem supports them) and hard links between files inside the tree. `dst`
// itself receives src's mode, owner, xattrs and times. Does not cross filesystems.
absl::Status CopyTree(const std::string& src, const std::string& dst);

// Removes `path` and everything below it without following symlinks or crossing into another
// filesystem (a mount below stops the removal with an error). Missing: OK.
absl::Status RemoveTree(const std::string& path);

}  // namespace berth::snapshotd
