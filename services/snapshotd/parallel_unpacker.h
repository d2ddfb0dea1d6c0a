#pragma once

// Unpacks a whole layer chain (berth.snapshots.v1.Unpacker, unpack_service.h), in one call or
// as a session whose layers are announced one by one as they arrive (Start). Names of the
// chain that exist already are reused, as containerd's unpacker does. On the overlay
// snapshotter the remaining layers are applied at the same time, each into its own detached
// snapshot (a layer's directory holds only its own changes, whiteouts included; all of them made
// when the session starts, in one transaction: LocalSnapshotter::PrepareDetachedAll) as soon as
// it is announced, lowest announced first, by a pool of min(layers, max_parallel) threads; each
// is committed on the one below as soon as everything below it is, the applied run above the
// last commit in one transaction (CommitChain: one fsync for the run, not one per layer). On the native snapshotter (a snapshot is a copy of its
// parent) they are applied one after the other on their parents.
//
// On any error every snapshot the call created (active or committed) is removed, and the
// error of the lowest failing layer is returned. A caller that goes away (ctx no longer
// Alive()) is such an error: the blobs are read in chunks that check it, and each layer and
// each commit checks it before it starts. A crash halfway leaves active "unpack-*"
// snapshots (as containerd's unpacker leaves "extract-*" ones) and committed layers that are
// complete, never a half-made committed one; the temporary ones carry the label
// kUnpackTemporaryLabel, and RemoveLeftovers (run by snapshotd before it serves) removes them.
//
// Thread-safe; concurrent unpacks of the same chain are fine (a name committed meanwhile by
// another call, on the same parent, is reused).

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/diff/diff.h"
#include "lib/oci/descriptor.h"
#include "lib/snapshots/snapshotter.h"
#include "lib/snapshots/unpacker.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

// On the active snapshots an unpack applies into, until they commit (committed snapshots get
// the caller's labels only).
inline constexpr char kUnpackTemporaryLabel[] = "berth.io/unpack-temporary";

struct ParallelUnpackerOptions {
  // The most layers applied at once. 0: std::thread::hardware_concurrency().
  int max_parallel = 0;
};

class ParallelUnpacker : public snapshots::Unpacker {
 public:
  // `snapshotter` and `applier` must outlive the unpacker; the applier writes overlay
  // whiteouts for the overlay snapshotter (LayerApplierOptions::Whiteouts::kOverlay).
  ParallelUnpacker(LocalSnapshotter& snapshotter, diff::Applier& applier,
                   ParallelUnpackerOptions options = {});
  ParallelUnpacker(const ParallelUnpacker&) = delete;
  ParallelUnpacker& operator=(const ParallelUnpacker&) = delete;

  // `layers` bottom first; `chain[i]` the committed name of layers[0..i]; `labels` go on every
  // snapshot this call commits (with containerd.io/uncompressed=<applied digest> and
  // containerd.io/snapshot.ref=<its chain id>, as containerd's unpacker labels). Returns the
  // uncompressed descriptor of each layer (for a reused one: digest from that label or the
  // layer's annotation, empty if neither; size 0). InvalidArgument for mismatched or empty
  // input; FailedPrecondition if an existing name is not committed or sits on another parent.
  absl::StatusOr<std::vector<oci::Descriptor>> Unpack(
      const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const snapshots::Labels& labels,
      const snapshots::UnpackProgressFn& progress = nullptr) override;
  absl::StatusOr<std::unique_ptr<snapshots::UnpackSession>> Start(
      const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const snapshots::Labels& labels,
      const snapshots::UnpackProgressFn& progress = nullptr) override;

  // Removes, in every namespace, the active snapshots an unpack killed halfway left
  // (kUnpackTemporaryLabel). Run before any Unpack; returns how many went.
  absl::StatusOr<int> RemoveLeftovers();

 private:
  class Session;

  LocalSnapshotter& snapshotter_;
  diff::Applier& applier_;
  const ParallelUnpackerOptions options_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace berth::snapshotd
