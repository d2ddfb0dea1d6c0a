#include "services/imaged/exporter.h"

#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"
#include "lib/content/blob_stream.h"
#include "lib/images/oci.h"
#include "lib/images/reference.h"
#include "lib/images/tar_stream.h"

namespace berth::imaged {

namespace {

constexpr int kMaxDepth = 8;

// The blobs one export writes, in the order found, each once.
struct Collector {
  const Context& ctx;
  content::ContentStore& content;
  const images::Platform want;
  const bool all_platforms;
  std::vector<oci::Descriptor> blobs;
  std::set<std::string> seen;

  absl::Status Need(const oci::Descriptor& desc, absl::string_view image) {
    if (seen.count(desc.digest.ToString()) != 0) {
      return absl::OkStatus();
    }
    absl::StatusOr<content::Info> info = content.GetInfo(ctx, desc.digest);
    if (absl::IsNotFound(info.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "image ", image, ": ", desc.digest.ToString(), " is not in the content store"));
    }
    BERTH_RETURN_IF_ERROR(info.status());
    if (info->size != desc.size) {
      return absl::FailedPreconditionError(
          absl::StrCat("image ", image, ": ", desc.digest.ToString(), " is ", info->size,
                       " bytes in the content store, ", desc.size, " by its descriptor"));
    }
    seen.insert(desc.digest.ToString());
    blobs.push_back(desc);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Document(const oci::Descriptor& desc, absl::string_view image) {
    BERTH_RETURN_IF_ERROR(Need(desc, image));
    if (desc.size > images::kMaxDocumentSize) {
      return absl::InvalidArgumentError(absl::StrCat("image ", image, ": ",
                                                     desc.digest.ToString(), " is over ",
                                                     images::kMaxDocumentSize, " bytes"));
    }
    return content::ReadBlob(content, ctx, desc.digest);
  }

  absl::Status Walk(const images::Descriptor& desc, absl::string_view image, int depth) {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("image ", image, ": indexes nested deeper than ", kMaxDepth));
    }
    if (images::IsManifestType(desc.media_type)) {
      BERTH_ASSIGN_OR_RETURN(std::string raw, Document(desc, image));
      absl::StatusOr<images::Manifest> manifest = images::ParseManifest(raw, desc.media_type);
      if (!manifest.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("image ", image, ": ", manifest.status().message()));
      }
      BERTH_RETURN_IF_ERROR(Need(manifest->config, image));
      for (const images::Descriptor& layer : manifest->layers) {
        BERTH_RETURN_IF_ERROR(Need(layer, image));
      }
      return absl::OkStatus();
    }
    if (!images::IsIndexType(desc.media_type)) {
      return Need(desc, image);  // an artifact: the blob alone
    }
    BERTH_ASSIGN_OR_RETURN(std::string raw, Document(desc, image));
    absl::StatusOr<images::Index> index = images::ParseIndex(raw, desc.media_type);
    if (!index.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("image ", image, ": ", index.status().message()));
    }
    int chosen = 0;
    for (const images::Descriptor& child : index->manifests) {
      if (images::IsManifestType(child.media_type) && !all_platforms &&
          child.platform.has_value() && !images::MatchPlatform(want, *child.platform)) {
        continue;
      }
      if (!images::IsManifestType(child.media_type) && !images::IsIndexType(child.media_type)) {
        continue;
      }
      BERTH_RETURN_IF_ERROR(Walk(child, image, depth + 1));
      ++chosen;
    }
    if (chosen == 0) {
      return absl::NotFoundError(absl::StrCat("image ", image, ": no manifest for platform ",
                                              images::FormatPlatform(want)));
    }
    return absl::OkStatus();
  }
};

}  // namespace

absl::Status Exporter::Export(const Context& ctx, const ExportRequest& request, ByteSink& out) {
  if (request.names.empty()) {
    return absl::InvalidArgumentError("export: no image named");
  }
  images::Platform want = images::HostPlatform();
  if (!request.platform.empty()) {
    BERTH_ASSIGN_OR_RETURN(want, images::ParsePlatform(request.platform));
  }
  Collector collector{ctx, content_, want, request.all_platforms, {}, {}};
  images::Index index;
  index.media_type = std::string(images::kOciIndex);
  std::set<std::string> names;
  for (const std::string& name : request.names) {
    if (!names.insert(name).second) {
      continue;
    }
    BERTH_ASSIGN_OR_RETURN(images::Image image, images_.Get(ctx, name));
    images::Descriptor entry;
    static_cast<oci::Descriptor&>(entry) = image.target;
    entry.annotations = {{"io.containerd.image.name", name}};
    if (absl::StatusOr<images::Reference> ref = images::Reference::Parse(name);
        ref.ok() && !ref->tag.empty()) {
      entry.annotations["org.opencontainers.image.ref.name"] = ref->tag;
    }
    BERTH_RETURN_IF_ERROR(collector.Walk(entry, name, 0));
    index.manifests.push_back(std::move(entry));
  }

  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<images::TarWriter> tar, images::TarWriter::Open(out));
  BERTH_RETURN_IF_ERROR(tar->AddFile("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  BERTH_RETURN_IF_ERROR(tar->AddFile("index.json", images::ToJson(index)));
  BERTH_RETURN_IF_ERROR(tar->AddDirectory("blobs"));
  std::set<std::string> algorithms;
  for (const oci::Descriptor& blob : collector.blobs) {
    if (algorithms.insert(blob.digest.algorithm()).second) {
      BERTH_RETURN_IF_ERROR(tar->AddDirectory(absl::StrCat("blobs/", blob.digest.algorithm())));
    }
    BERTH_ASSIGN_OR_RETURN(std::unique_ptr<content::BlobSource> source,
                           content::BlobSource::Open(content_, ctx, blob.digest, blob.size));
    BERTH_RETURN_IF_ERROR(tar->AddFile(
        absl::StrCat("blobs/", blob.digest.algorithm(), "/", blob.digest.hex()), blob.size,
        *source));
  }
  return tar->Close();
}

}  // namespace berth::imaged
