#pragma once

// The first half of an import (importer.h): the tar streamed into the content store, entry by
// entry, under the lease in ctx. Internal to imaged.

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "lib/archive/compression.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/content/content_store.h"
#include "lib/images/tar_stream.h"
#include "lib/leases/lease_manager.h"
#include "services/imaged/puller.h"

namespace berth::imaged {

// A file of the archive now committed in the store.
struct ArchivedBlob {
  Digest digest;
  int64_t size = 0;
  archive::Compression compression = archive::Compression::kNone;  // from its magic bytes
};

struct ArchiveContents {
  // index.json, manifest.json, oci-layout, repositories: their bytes (each at most 4 MiB).
  std::map<std::string, std::string> documents;
  // Every other regular file but docker's legacy <id>/json and <id>/VERSION, by path.
  std::map<std::string, ArchivedBlob> files;
  // The same by digest (the first path holding it).
  std::map<std::string, ArchivedBlob> by_digest;
};

struct ReceiveOptions {
  images::TarLimits limits;
  int64_t progress_step = 1 << 20;
};

// Reads `tar` to its end. A blobs/<alg>/<hex> file must hash to its name (InvalidArgument
// naming the entry otherwise; its ingest is aborted); other files are stored under the digest
// they hash to. Blobs the store had already are read and checked all the same, and added to
// ctx.lease on `leases`. Each blob reports kDownloading..kVerifying, then kDone or kExists.
// A path that appears twice is InvalidArgument; so is every TarReader refusal and a symlink
// anywhere but at docker's legacy <id>/layer.tar (skipped there, never followed).
absl::StatusOr<ArchiveContents> ReceiveArchive(const Context& ctx, ByteSource& tar,
                                               content::ContentStore& content,
                                               leases::LeaseManager& leases,
                                               const ReceiveOptions& options,
                                               const BlobEventFn& progress);

}  // namespace berth::imaged
