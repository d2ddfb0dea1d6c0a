#pragma once

// snapshotd's diff::Applier: reads a layer blob from a content::Provider, decompresses it
// (gzip or zstd, told by the media type and the magic bytes), and extracts it with the secure
// extractor (archive/apply.h) straight into the writable directory of the mounts: a bind
// mount's source or an overlay's upperdir. Nothing is mounted.

#include <cstdint>
#include <vector>

#include "lib/content/content_store.h"
#include "lib/diff/diff.h"
#include "services/snapshotd/archive/apply.h"

namespace berth::snapshotd {

struct LayerApplierOptions {
  enum class Whiteouts {
    kAuto,     // overlay whiteouts when the mount is an overlay, deletions otherwise
    kOverlay,  // the overlay snapshotter (its first snapshot is a bind mount)
    kNative,   // the native (copying) snapshotter
  };
  Whiteouts whiteouts = Whiteouts::kAuto;
  // Character and block devices in layers; false refuses such layers (InvalidArgument).
  bool allow_devices = true;
  // The most uncompressed tar bytes one layer may have (ResourceExhausted past it). 0: none.
  int64_t max_uncompressed_size = 0;
  // Decompress in a second thread while the first extracts.
  bool pipeline = true;
  // Tests only: how paths are resolved.
  archive::Resolver resolver = archive::Resolver::kAuto;
};

// Thread-safe: each Apply is independent (the provider must be thread-safe, as the content
// contract says). Errors (the caller discards the snapshot on any of them):
//   InvalidArgument   unsupported media type, mounts with no writable directory, not a tar,
//                     or an entry refused by the extractor's rules
//   DataLoss          truncated or corrupt layer
//   FailedPrecondition  desc.size or the "containerd.io/uncompressed" annotation mismatch
//   ResourceExhausted   the size limit
//   NotFound          the blob is not in the content store
class LayerApplier : public diff::Applier {
 public:
  explicit LayerApplier(content::Provider& provider, LayerApplierOptions options = {});

  absl::StatusOr<oci::Descriptor> Apply(const Context& ctx, const oci::Descriptor& desc,
                                        const std::vector<mount::Mount>& mounts) override;

 private:
  content::Provider& provider_;
  const LayerApplierOptions options_;
};

// The label/annotation carrying a layer's uncompressed digest.
inline constexpr char kUncompressedLabel[] = "containerd.io/uncompressed";

}  // namespace berth::snapshotd
