#pragma once

// The copying snapshotter ("native", after containerd's snapshots/native), for filesystems
// without overlayfs: every active or view snapshot starts as a full copy of its parent's tree
// (fs_util.h CopyTree: modes, owners, times, xattrs, symlinks, hard links within the tree,
// device nodes), so it costs the parent's size in space and time. Mounts are one bind mount of
// <root>/snapshots/<id>/fs ("rw" for active, "ro" for view, "rbind"). Commit keeps the
// directory in place. See local_snapshotter.h for metadata, crash safety and leases.

#include <memory>

#include "absl/status/statusor.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

class NativeSnapshotter : public LocalSnapshotter {
 public:
  // Opens (creating when needed) the snapshotter at options.root and runs Cleanup.
  static absl::StatusOr<std::unique_ptr<NativeSnapshotter>> Open(
      const SnapshotterOptions& options);

 protected:
  absl::Status Populate(const std::string& dir, snapshots::Kind kind,
                        const std::vector<int64_t>& parents) override;
  std::vector<mount::Mount> MountsOf(int64_t id, snapshots::Kind kind,
                                     const std::vector<int64_t>& parents) const override;

 private:
  explicit NativeSnapshotter(SnapshotterOptions options)
      : LocalSnapshotter(std::move(options)) {}
};

}  // namespace berth::snapshotd
