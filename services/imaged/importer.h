#pragma once

// imaged's import: an image tarball streamed by a client made into blobs in the content store,
// a snapshot chain (when asked) and image records, after containerd's archive.ImportIndex.
// imaged never opens a path a client names: the tarball arrives as a ByteSource.
//
// Formats (told by what the archive holds, gzip or zstd compressed or not):
// - an OCI image layout: oci-layout, index.json, blobs/<alg>/<hex>. Each index.json entry is
//   one image, named by its io.containerd.image.name annotation, else by
//   org.opencontainers.image.ref.name when that is a reference (a bare tag names nothing);
//   entries may be manifests or (nested, multi-platform) indexes.
// - `docker save`'s: manifest.json listing Config, RepoTags and Layers by path (legacy
//   <id>/layer.tar dirs or blobs/). Each entry becomes a Docker schema2 manifest (layers typed
//   by their magic bytes), stored and named by each of its RepoTags, as containerd does.
// ImportRequest::index_name names the whole archive as one more record (index.json stored as a
// blob; for a docker archive an OCI index of its manifests).
//
// What Import promises:
// - Everything it writes to the content store and the unpacker is done under a lease it
//   creates (labelled kImportLeaseLabel, and containerd.io/gc.expire in an hour in case imaged
//   dies; also kPullLeaseLabel=import, so that ReleasePullLeases deletes a dead imaged's at
//   start as it does its pulls') and deletes before returning. Blobs are written while the tar streams in; a
//   blobs/<alg>/<hex> entry is checked against its name (digest and, once a document names it,
//   size) as it is written. What survives is held by the labels the puller sets:
//   containerd.io/gc.ref.content.m.<i> on indexes, .config and .l.<i> on manifests,
//   gc.ref.snapshot.<snapshotter> on an unpacked config, containerd.io/gc.root on each
//   record's target (set last, just before the records).
// - Only the platform's manifests (ImportRequest::platform, default the host's) must be in an
//   index's archive unless all_platforms; those are the ones unpacked.
// - Refusals change nothing that outlives the call (no record, no snapshot, the lease gone):
//   InvalidArgument naming the entry for an unsafe entry (absolute, "..", a link, a device), a
//   tar over the limits, a document over 4 MiB or malformed, a blob whose content is not its
//   name, a blob a document names that the archive lacks, an archive naming no image;
//   NotFound when an index has no manifest for the platform; FailedPrecondition when asked to
//   unpack without an unpacker. The stores' and the unpacker's errors come back unchanged.
//
// Thread-safe: imports may run concurrently. `progress` is called from the importing thread.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/content/content_store.h"
#include "lib/images/image_store.h"
#include "lib/images/tar_stream.h"
#include "lib/leases/lease_manager.h"
#include "lib/snapshots/unpacker.h"
#include "services/imaged/puller.h"

namespace berth::imaged {

struct ImportRequest {
  bool unpack = true;
  std::string snapshotter = "overlayfs";  // names the gc.ref.snapshot label
  bool all_platforms = false;
  std::string platform;  // "os/arch[/variant]"; empty: HostPlatform()
  std::string index_name;
};

struct ImporterOptions {
  images::TarLimits limits;
  // The least bytes between two kDownloading events of one blob.
  int64_t progress_step = 1 << 20;
};

class Importer : private ImageStores {
 public:
  // Every reference must outlive the Importer. `unpacker` may be null.
  Importer(content::ContentStore& content, leases::LeaseManager& leases,
           snapshots::Unpacker* unpacker, images::ImageStore& images,
           ImporterOptions options = {});
  Importer(const Importer&) = delete;
  Importer& operator=(const Importer&) = delete;

  // Imports `tar` in ctx.ns (ctx.lease is replaced by the import's own lease). Returns the
  // records created or updated, in the archive's order.
  absl::StatusOr<std::vector<images::Image>> Import(const Context& ctx, ByteSource& tar,
                                                    const ImportRequest& request,
                                                    const BlobEventFn& progress = nullptr);

 private:
  const ImporterOptions options_;
};

// The label on every import's lease.
inline constexpr char kImportLeaseLabel[] = "berth.io/import";

}  // namespace berth::imaged
