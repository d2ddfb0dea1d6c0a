#pragma once

// containerd's Mount (containerd.types.Mount): what a snapshotter hands out and execd (or
// containerd) mounts. `type` is "overlay", "bind" or a filesystem type; options are mount(8)
// style ("ro", "rbind", "lowerdir=...").

#include <optional>
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

// mount(2)/umount2(2). Thread-safe. An overlay whose options come near the page size (many
// lowerdirs) is mounted the containerd way: the lowerdirs are rewritten relative to their
// common parent directory and the mount(2) call runs in a short-lived thread that has its own
// working directory (unshare(CLONE_FS) + fchdir), so the process's cwd never changes.
// A Mount's non-empty `target` is a path below MountAll's target.
Mounter& SystemMounter();

// The directory a writer changes when it writes through `mounts`, without mounting: the source
// of a single read-write bind mount, or the upperdir of a single overlay mount. nullopt for
// anything else (read-only mounts, several mounts, other types).
std::optional<std::string> WritableDir(const std::vector<Mount>& mounts);

// The value of option `name=` in `options` (e.g. "lowerdir"), nullopt when absent.
std::optional<std::string> OptionValue(const std::vector<std::string>& options,
                                       const std::string& name);

// mount(8) options split into mount(2) arguments.
struct ParsedOptions {
  unsigned long flags = 0;              // MS_* except propagation flags
  unsigned long propagation = 0;        // MS_SHARED/MS_PRIVATE/MS_SLAVE/MS_UNBINDABLE (+MS_REC)
  std::string data;                     // the remaining options, comma-separated
};
ParsedOptions ParseOptions(const std::vector<std::string>& options);

// containerd's compactLowerdirOption: when an overlay's lowerdirs share a parent directory
// (other than "/"), returns that directory (with a trailing '/') and rewrites `*options` so
// the lowerdirs are relative to it. Returns "" and leaves options alone otherwise (one
// lowerdir, no lowerdir, nothing in common).
std::string CompactLowerdirs(std::vector<std::string>* options);

}  // namespace berth::mount
