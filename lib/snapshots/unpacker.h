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
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/oci/descriptor.h"
#include "lib/snapshots/snapshotter.h"

namespace berth::snapshots {

// What happened to one layer: kStarted when its apply begins, then kApplied once it is
// committed as chain[i]; or kReused alone. In no fixed order for layers applied at the same
// time; `applied` is set for kApplied and kReused.
struct UnpackProgress {
  enum class State { kReused, kApplied, kStarted };
  size_t layer = 0;  // index into `layers`
  State state = State::kApplied;
  oci::Descriptor applied;
};
using UnpackProgressFn = std::function<void(const UnpackProgress&)>;

// An unpack whose layers become available one by one (a pull announcing each layer as its
// blob lands in the content store): a layer's apply may start as soon as it is Ready, while
// the ones above it still download; the chain is still committed bottom-up.
//
// Destroying a session that was not Finished aborts it: the work stops and every snapshot it
// created is removed before the destructor returns (or, over gRPC, once snapshotd saw the
// stream end). Not thread-safe: one caller thread at a time (Ready from several threads needs
// the caller's own lock).
class UnpackSession {
 public:
  virtual ~UnpackSession() = default;

  // How many layers at the bottom of the chain exist already and are reused (never applied;
  // their Ready is accepted and ignored).
  virtual size_t reused() const = 0;

  // layers[i]'s blob is in the content store: its apply may begin. Repeats are ignored.
  // Returns the unpack's error when it failed already (the caller may stop feeding it);
  // InvalidArgument for an index out of range.
  virtual absl::Status Ready(size_t layer) = 0;

  // Waits for every layer to be applied and committed and returns what Unpacker::Unpack
  // returns. Every layer must have been Ready (else InvalidArgument, and all is removed). On
  // any error every snapshot the session created is removed before it returns.
  virtual absl::StatusOr<std::vector<oci::Descriptor>> Finish() = 0;
};

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

  // The same unpack with layers announced one by one (UnpackSession::Ready). Checks the input
  // and reuses the existing prefix of the chain before it returns (the same errors as Unpack);
  // the apply errors come from Ready or Finish. ctx (and `progress`) must stay valid until the
  // session is gone; progress is called from the unpacking threads.
  virtual absl::StatusOr<std::unique_ptr<UnpackSession>> Start(
      const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const Labels& labels,
      const UnpackProgressFn& progress = nullptr) = 0;
};

}  // namespace berth::snapshots
