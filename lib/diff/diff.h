#pragma once

// Applying and computing layer diffs (containerd's diff.Applier and diff.Comparer), no gRPC in
// it. snapshotd implements both (services/snapshotd); GrpcDiff (this folder) is the client.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/mount/mount.h"
#include "lib/oci/descriptor.h"

namespace berth::diff {

class Applier {
 public:
  virtual ~Applier() = default;
  // Reads the layer `desc` (tar; gzip or zstd compressed or not, OCI or Docker media types)
  // from the content store and extracts it onto `mounts` (an active snapshot's), turning OCI
  // whiteouts into overlay whiteouts. Returns the descriptor of the uncompressed tar
  // (media type without the compression suffix, its digest and size). If `desc` carries the
  // annotation "containerd.io/uncompressed" (or the caller set it), a mismatch is
  // FailedPrecondition. Never writes outside the snapshot.
  virtual absl::StatusOr<oci::Descriptor> Apply(const Context& ctx, const oci::Descriptor& desc,
                                                const std::vector<mount::Mount>& mounts) = 0;
};

struct CompareOptions {
  std::string media_type;  // default application/vnd.oci.image.layer.v1.tar+gzip
  std::string ref;         // ingest ref, default derived from the mounts
  std::map<std::string, std::string> labels;  // labels for the written blob
};

class Comparer {
 public:
  virtual ~Comparer() = default;
  // Computes the changes from `lower` to `upper` as a layer tar (OCI whiteouts), writes it to
  // the content store (label containerd.io/uncompressed=<digest of the tar>) and returns its
  // descriptor.
  virtual absl::StatusOr<oci::Descriptor> Compare(const Context& ctx,
                                                  const std::vector<mount::Mount>& lower,
                                                  const std::vector<mount::Mount>& upper,
                                                  const CompareOptions& options) = 0;
};

}  // namespace berth::diff
