#pragma once

// snapshotd's diff::Comparer: computes the changes from a lower to an upper tree as an OCI
// layer tar (PAX, OCI whiteouts), compresses it (gzip by default, zstd or none by media type)
// and writes it into the content store with the label containerd.io/uncompressed=<tar digest>.
//
// Two ways to find the changes:
// - overlay: when `upper` is one overlay mount whose lowerdirs are exactly the directories of
//   `lower` (a bind mount, an overlay of lowerdirs, or nothing), the upperdir *is* the change
//   set: it is read directly, its 0/0 character devices become ".wh.<name>" entries and a
//   directory with trusted.overlay.opaque=y gets a ".wh..wh..opq" entry.
// - walking: otherwise both trees are walked side by side (bind mounts read at their source,
//   anything else mounted read-only in a scratch directory with the Mounter) and compared by
//   type, mode, owner, size, mtime, xattrs, link target and, when mtimes carry no
//   sub-second part, content.

#include <memory>
#include <string>
#include <vector>

#include "lib/content/content_store.h"
#include "lib/diff/diff.h"
#include "lib/mount/mount.h"

namespace berth::snapshotd {

struct WalkingDifferOptions {
  // Where temporary read-only mount points are created (the walking case). Must exist.
  std::string scratch_dir = "/tmp";
  // Mounts the trees that are not plain bind mounts; null means mount::SystemMounter().
  mount::Mounter* mounter = nullptr;
  // Compression level (-1: the codec's default).
  int level = -1;
};

// Thread-safe: each Compare is independent (the ingester must be thread-safe).
class WalkingDiffer : public diff::Comparer {
 public:
  explicit WalkingDiffer(content::Ingester& ingester, WalkingDifferOptions options = {});

  // Errors: InvalidArgument for an unsupported media type or unusable mounts; errors of the
  // content store (its ingest is closed, not committed) and of the filesystem otherwise.
  absl::StatusOr<oci::Descriptor> Compare(const Context& ctx,
                                          const std::vector<mount::Mount>& lower,
                                          const std::vector<mount::Mount>& upper,
                                          const diff::CompareOptions& options) override;

 private:
  content::Ingester& ingester_;
  const WalkingDifferOptions options_;
};

}  // namespace berth::snapshotd
