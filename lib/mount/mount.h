#pragma once

// containerd's Mount (containerd.types.Mount): what a snapshotter hands out and execd (or
// containerd) mounts. `type` is "overlay", "bind" or a filesystem type; options are mount(8)
// style ("ro", "rbind", "lowerdir=...").

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace berth::mount {

struct Mount {
  std::string type;
  std::string source;
  std::string target;  // usually empty: the mounts apply at the root given to MountAll
  std::vector<std::string> options;
};

// The OS behind an interface (STYLE.md), so tests can fail a mount or count them.
class Mounter {
 public:
  virtual ~Mounter() = default;
  // Mounts every entry at `target` in order (bind: MS_BIND|MS_REC; "ro" and the other flag
  // options become mount flags, the rest the data string). On failure unmounts what it
  // mounted and returns an error naming the mount.
  virtual absl::Status MountAll(const std::vector<Mount>& mounts, const std::string& target) = 0;
  // Unmounts `target` (and anything stacked on it). Not mounted: OK.
  virtual absl::Status Unmount(const std::string& target) = 0;
};

// mount(2)/umount2(2).
Mounter& SystemMounter();

}  // namespace berth::mount
