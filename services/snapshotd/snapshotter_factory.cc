#include "services/snapshotd/snapshotter_factory.h"

#include "absl/strings/str_cat.h"
#include "services/snapshotd/native_snapshotter.h"
#include "services/snapshotd/overlay_snapshotter.h"

namespace berth::snapshotd {

absl::StatusOr<std::unique_ptr<LocalSnapshotter>> OpenLocalSnapshotter(
    const SnapshotterOptions& options) {
  if (options.kind.empty() || options.kind == "overlayfs" || options.kind == "overlay") {
    absl::StatusOr<std::unique_ptr<OverlaySnapshotter>> s = OverlaySnapshotter::Open(options);
    if (!s.ok()) {
      return s.status();
    }
    return std::unique_ptr<LocalSnapshotter>(std::move(*s));
  }
  if (options.kind == "native") {
    absl::StatusOr<std::unique_ptr<NativeSnapshotter>> s = NativeSnapshotter::Open(options);
    if (!s.ok()) {
      return s.status();
    }
    return std::unique_ptr<LocalSnapshotter>(std::move(*s));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown snapshotter \"", options.kind, "\" (want \"overlayfs\" or \"native\")"));
}

absl::StatusOr<std::unique_ptr<snapshots::Snapshotter>> OpenSnapshotter(
    const SnapshotterOptions& options) {
  absl::StatusOr<std::unique_ptr<LocalSnapshotter>> s = OpenLocalSnapshotter(options);
  if (!s.ok()) {
    return s.status();
  }
  return std::unique_ptr<snapshots::Snapshotter>(std::move(*s));
}

}  // namespace berth::snapshotd
