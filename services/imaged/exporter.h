#pragma once

// imaged's export: image records written as an OCI image-layout tarball (containerd's
// archive.Export): oci-layout, index.json with one entry per record (its target, annotated
// io.containerd.image.name=<record name> and org.opencontainers.image.ref.name=<its tag>), then
// blobs/<alg>/<hex> for every blob the records need, each once. skopeo (oci-archive:), umoci
// and `ctr images import` read it.
//
// Which blobs: a record's target, and below an index only the manifests for the platform
// (ExportRequest::platform, default the host's) unless all_platforms; a manifest brings its
// config and layers. Everything is checked to be in the content store before the first byte is
// written, so a missing blob is an error (FailedPrecondition naming the image and the blob) and
// not a cut-off tarball; the sink's errors afterwards end the export.
//
// Errors: InvalidArgument for no names or a malformed platform; NotFound for an unknown
// record; NotFound when an index has no manifest for the platform; FailedPrecondition for a
// blob the store lacks; InvalidArgument for a stored document that does not parse. Thread-safe.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/content/content_store.h"
#include "lib/images/image_store.h"

namespace berth::imaged {

struct ExportRequest {
  std::vector<std::string> names;  // image records, as stored
  std::string platform;            // "os/arch[/variant]"; empty: HostPlatform()
  bool all_platforms = false;
};

class Exporter {
 public:
  // Both must outlive the Exporter.
  Exporter(content::ContentStore& content, images::ImageStore& images)
      : content_(content), images_(images) {}
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  // Writes the tarball to `out` and closes it (not on error).
  absl::Status Export(const Context& ctx, const ExportRequest& request, ByteSink& out);

 private:
  content::ContentStore& content_;
  images::ImageStore& images_;
};

}  // namespace berth::imaged
