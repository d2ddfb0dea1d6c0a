#pragma once

// The one way snapshotd (and its tests) get a local snapshotter: by kind, from config.

#include <memory>

#include "absl/status/statusor.h"
#include "lib/snapshots/snapshotter.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

// options.kind: "overlayfs" (also "overlay" or empty) -> OverlaySnapshotter, "native" ->
// NativeSnapshotter; anything else InvalidArgument.
absl::StatusOr<std::unique_ptr<snapshots::Snapshotter>> OpenSnapshotter(
    const SnapshotterOptions& options);

// Same, keeping the concrete type for what lies beyond the contract (UpperDir,
// LeaseResources).
absl::StatusOr<std::unique_ptr<LocalSnapshotter>> OpenLocalSnapshotter(
    const SnapshotterOptions& options);

}  // namespace berth::snapshotd
