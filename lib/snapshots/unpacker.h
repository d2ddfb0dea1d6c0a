#pragma once

// The unpacker contract: a chain of layer blobs (in the content store) made into a chain of
// committed snapshots, as containerd's unpacker does after a pull. Implementations:
// snapshotd's ParallelUnpacker (services/snapshotd/parallel_unpacker.h: layers applied at the
// same time on overlay) and GrpcUnpacker (this folder: the same over snapshotd's
// berth.snapshots.v1.Unpacker), so imaged holds an `Unpacker&` and its tests can hand it the
// in-process one.
//
// Terms: `layers[i]` is a layer's descriptor (compressed blob), bottom first; `chain[i]` is the
// committed name of the snapshot holding layers[0..i] (a chain id, say).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/oci/descriptor.h"
#include "lib/snapshots/snapshotter.h"

namespace berth::snapshots {

// What happened to one layer. Reported once per layer when it is settled, in no fixed order
// for layers applied at the same time; `applied` is set for kApplied and kReused.
struct UnpackProgress {
  enum class State { kReused, kApplied };
  size_t layer = 0;  // index into `layers`
  State state = State::kApplied;
  oci::Descriptor applied;
};
using UnpackProgressFn = std::function<void(const UnpackProgress&)>;

// Thread-safe; concurrent unpacks of the same chain are fine.
class Unpacker {
 public:
  virtual ~Unpacker() = default;

  // Names of `chain` that exist already (committed, on the expected parent) are reused; the
  // rest are applied and committed as chain[i] on chain[i-1], with `labels` and
  // containerd.io/uncompressed=<the layer's uncompressed digest>. Returns each layer's
  // uncompressed descriptor (a reused layer's digest comes from that label or the layer's
  // annotation, empty if neither; size 0). `progress` (may be null) is called from the
  // unpacking threads.
  //
  // All or nothing: on any error, ctx no longer Alive() included (checked between chunks and
  // layers), every snapshot the call created is removed, and the error of the lowest failing
  // layer is returned. Errors: InvalidArgument for mismatched or empty input, FailedPrecondition
  // if an existing name is not committed or sits on another parent, NotFound for a missing
  // blob, the apply's errors (apply.h), Cancelled / DeadlineExceeded.
  virtual absl::StatusOr<std::vector<oci::Descriptor>> Unpack(
      const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const Labels& labels,
      const UnpackProgressFn& progress = nullptr) = 0;
};

}  // namespace berth::snapshots
