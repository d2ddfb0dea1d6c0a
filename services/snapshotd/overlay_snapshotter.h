#pragma once

// The default snapshotter, on overlayfs (after containerd's snapshots/overlay). Each snapshot
// owns <root>/snapshots/<id>/fs (its upper dir once active, a lower dir once committed) and,
// when active, <id>/work. Mounts:
//   active, no parent       bind <id>/fs, "rw", "rbind"
//   active, parents         overlay lowerdir=<parents' fs, nearest first>,upperdir,workdir
//   view, no parent         bind <id>/fs (empty), "ro", "rbind"
//   view, one parent        bind <parent>/fs, "ro", "rbind"
//   view, several parents   overlay lowerdir=<parents' fs> only (read-only by nature)
// Paths in the mounts are absolute; a chain too long for one page of mount options is mounted
// by mount::SystemMounter (as containerd's mount code does) with lowerdirs made relative to
// <root>/snapshots. Commit turns the active's upper dir into the committed lower dir in place.
// See local_snapshotter.h for metadata, crash safety and leases.

#include <memory>

#include "absl/status/statusor.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

class OverlaySnapshotter : public LocalSnapshotter {
 public:
  // Opens (creating when needed) the snapshotter at options.root, runs Cleanup, and checks
  // with options.mounter that overlayfs works there (FailedPrecondition if not).
  static absl::StatusOr<std::unique_ptr<OverlaySnapshotter>> Open(
      const SnapshotterOptions& options);

  // A layer's directory holds only its own changes (whiteouts as overlay char devices).
  bool SupportsDetached() const override { return true; }

 protected:
  absl::Status Populate(const std::string& dir, snapshots::Kind kind,
                        const std::vector<int64_t>& parents) override;
  std::vector<mount::Mount> MountsOf(int64_t id, snapshots::Kind kind,
                                     const std::vector<int64_t>& parents) const override;

 private:
  explicit OverlaySnapshotter(SnapshotterOptions options)
      : LocalSnapshotter(std::move(options)) {}
  absl::Status CheckOverlay();
};

}  // namespace berth::snapshotd
