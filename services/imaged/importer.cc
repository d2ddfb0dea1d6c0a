#include "services/imaged/importer.h"

#include <map>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/images/oci.h"
#include "lib/images/reference.h"
#include "services/imaged/import_archive.h"

namespace berth::imaged {

namespace {

using images::Descriptor;
using State = BlobEvent::State;

constexpr char kGcExpire[] = "containerd.io/gc.expire";
constexpr char kImageNameAnnotation[] = "io.containerd.image.name";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
constexpr int kMaxDepth = 8;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

struct ManifestNode {
  Descriptor desc;
  images::Manifest manifest;
  std::vector<std::string> diff_ids;
  bool unpack = false;
};

struct IndexNode {
  Descriptor desc;
  images::Index index;
};

// What the import stores, labels and names once the archive is in.
struct Plan {
  std::vector<ManifestNode> manifests;
  std::vector<IndexNode> indexes;
  std::set<std::string> walked;
  std::vector<images::Image> records;
};

// One import's state after the archive is received.
struct Job {
  const Context& ctx;
  content::ContentStore& content;
  ArchiveContents& archive;
  const ImportRequest& request;
  const images::Platform want;
  const BlobEventFn& progress;

  void Emit(const oci::Descriptor& desc, State state) const {
    if (progress) {
      BlobEvent event;
      event.digest = desc.digest;
      event.media_type = desc.media_type;
      event.offset = desc.size;
      event.total = desc.size;
      event.state = state;
      progress(event);
    }
  }

  // `desc` must be a blob of the archive, of the size it says.
  absl::Status Require(const oci::Descriptor& desc, absl::string_view who) const {
    auto it = archive.by_digest.find(desc.digest.ToString());
    if (it == archive.by_digest.end()) {
      return absl::InvalidArgumentError(absl::StrCat("archive: ", who, " names ",
                                                     desc.digest.ToString(),
                                                     ", which the archive does not hold"));
    }
    if (it->second.size != desc.size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "archive: ", desc.digest.ToString(), " is ", it->second.size, " bytes; ", who,
          " says ", desc.size));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadDocument(const oci::Descriptor& desc,
                                           absl::string_view who) const {
    BERTH_RETURN_IF_ERROR(Require(desc, who));
    if (desc.size > images::kMaxDocumentSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive: ", desc.digest.ToString(), " (named by ", who, "): ",
                       desc.size, " bytes, over the limit of ", images::kMaxDocumentSize));
    }
    return content::ReadBlob(content, ctx, desc.digest);
  }

  // Stores a document the import made (a docker archive's manifest, an index) under the lease
  // and counts it as part of the archive.
  absl::StatusOr<Descriptor> StoreMade(absl::string_view media_type, const std::string& raw) {
    Descriptor desc;
    desc.media_type = std::string(media_type);
    desc.digest = Sha256Of(raw);
    desc.size = static_cast<int64_t>(raw.size());
    BERTH_RETURN_IF_ERROR(content::WriteBlob(
        content, ctx, absl::StrCat("import-", ctx.lease, "-", desc.digest.hex()), raw,
        desc.digest, {}));
    archive.by_digest[desc.digest.ToString()] = ArchivedBlob{desc.digest, desc.size, {}};
    Emit(desc, State::kDone);
    return desc;
  }

  absl::Status WalkManifest(Plan& plan, const Descriptor& desc, absl::string_view who) const {
    BERTH_ASSIGN_OR_RETURN(std::string raw, ReadDocument(desc, who));
    absl::StatusOr<images::Manifest> manifest = images::ParseManifest(raw, desc.media_type);
    if (!manifest.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("archive: manifest ", desc.digest.ToString(),
                                                     ": ", manifest.status().message()));
    }
    const std::string self = absl::StrCat("manifest ", desc.digest.ToString());
    BERTH_ASSIGN_OR_RETURN(std::string config_raw, ReadDocument(manifest->config, self));
    absl::StatusOr<images::ImageConfig> config = images::ParseImageConfig(config_raw);
    if (!config.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("archive: config ",
                                                     manifest->config.digest.ToString(), ": ",
                                                     config.status().message()));
    }
    for (const Descriptor& layer : manifest->layers) {
      BERTH_RETURN_IF_ERROR(Require(layer, self));
    }
    if (config->diff_ids.size() != manifest->layers.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "archive: ", self, ": the config names ", config->diff_ids.size(), " diff ids for ",
          manifest->layers.size(), " layers"));
    }
    images::Platform have{config->os, config->architecture, config->variant, {}, {}};
    ManifestNode node{desc, *std::move(manifest), config->diff_ids, request.unpack};
    if (!have.os.empty() && !have.architecture.empty() &&
        !images::MatchPlatform(want, have).has_value()) {
      node.unpack = false;  // another platform's image: stored, not unpacked
    }
    plan.manifests.push_back(std::move(node));
    return absl::OkStatus();
  }

  // Walks an index or manifest `desc` named by `who`: every blob it needs must be in the
  // archive and its documents valid. Inside an index only the platform's manifests are needed
  // (all, with all_platforms).
  absl::Status Walk(Plan& plan, const Descriptor& desc, absl::string_view who, int depth) const {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive: ", who, ": indexes nested deeper than ", kMaxDepth));
    }
    if (!plan.walked.insert(desc.digest.ToString()).second) {
      return absl::OkStatus();
    }
    if (images::IsManifestType(desc.media_type)) {
      return WalkManifest(plan, desc, who);
    }
    if (!images::IsIndexType(desc.media_type)) {
      return absl::InvalidArgumentError(absl::StrCat("archive: ", who, " names ",
                                                     desc.digest.ToString(), " of type \"",
                                                     desc.media_type, "\", not an image"));
    }
    BERTH_ASSIGN_OR_RETURN(std::string raw, ReadDocument(desc, who));
    absl::StatusOr<images::Index> index = images::ParseIndex(raw, desc.media_type);
    if (!index.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("archive: index ", desc.digest.ToString(),
                                                     ": ", index.status().message()));
    }
    const std::string self = absl::StrCat("index ", desc.digest.ToString());
    int chosen = 0;
    for (const Descriptor& child : index->manifests) {
      bool is_manifest = images::IsManifestType(child.media_type);
      if (!is_manifest && !images::IsIndexType(child.media_type)) {
        continue;  // not an image (an artifact): kept by the labels if present, not needed
      }
      if (is_manifest && !request.all_platforms && child.platform.has_value() &&
          !images::MatchPlatform(want, *child.platform).has_value()) {
        continue;
      }
      BERTH_RETURN_IF_ERROR(Walk(plan, child, self, depth + 1));
      ++chosen;
    }
    if (chosen == 0) {
      return absl::NotFoundError(absl::StrCat("archive: ", self, " has no manifest for platform ",
                                              images::FormatPlatform(want)));
    }
    plan.indexes.push_back(IndexNode{desc, *std::move(index)});
    return absl::OkStatus();
  }
};

// The record name an OCI index.json entry gives, empty for none (a bare tag names nothing).
absl::StatusOr<std::string> OciName(const Descriptor& entry) {
  std::string name;
  if (auto it = entry.annotations.find(kImageNameAnnotation); it != entry.annotations.end()) {
    name = it->second;
  } else if (auto ref = entry.annotations.find(kRefNameAnnotation);
             ref != entry.annotations.end() &&
             ref->second.find_first_of("/:") != std::string::npos) {
    name = ref->second;
  }
  if (name.empty()) {
    return name;
  }
  absl::StatusOr<images::Reference> parsed = images::Reference::Parse(name);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("archive: index.json names ",
                                                   entry.digest.ToString(), " \"", name,
                                                   "\": ", parsed.status().message()));
  }
  return parsed->String();
}

absl::Status PlanOci(Job& job, Plan& plan, std::vector<Descriptor>& top) {
  const std::string& raw = job.archive.documents.at("index.json");
  if (auto layout = job.archive.documents.find("oci-layout");
      layout != job.archive.documents.end()) {
    nlohmann::json doc = nlohmann::json::parse(layout->second, nullptr, false);
    if (!doc.is_object() || !doc.contains("imageLayoutVersion")) {
      return absl::InvalidArgumentError(
          "archive: entry \"oci-layout\": not an OCI layout file (no imageLayoutVersion)");
    }
  }
  absl::StatusOr<images::Index> index = images::ParseIndex(raw, "");
  if (!index.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive: entry \"index.json\": ", index.status().message()));
  }
  for (const Descriptor& entry : index->manifests) {
    BERTH_RETURN_IF_ERROR(job.Walk(plan, entry, "index.json", 0));
    BERTH_ASSIGN_OR_RETURN(std::string name, OciName(entry));
    if (!name.empty()) {
      plan.records.push_back(images::Image{name, {}, entry, {}, {}});
    }
    top.push_back(entry);
  }
  if (!job.request.index_name.empty()) {
    BERTH_ASSIGN_OR_RETURN(Descriptor desc, job.StoreMade(images::kOciIndex, raw));
    plan.indexes.push_back(IndexNode{desc, *std::move(index)});
  }
  return absl::OkStatus();
}

// A path docker's manifest.json names, as a descriptor of the archived file.
absl::StatusOr<Descriptor> DockerFile(const Job& job, const nlohmann::json& path,
                                      absl::string_view media_type) {
  if (!path.is_string()) {
    return absl::InvalidArgumentError("archive: manifest.json: a path is not a string");
  }
  absl::StatusOr<std::string> normal = images::NormaliseEntryPath(path.get<std::string>());
  auto it = normal.ok() ? job.archive.files.find(*normal) : job.archive.files.end();
  if (it == job.archive.files.end()) {
    return absl::InvalidArgumentError(absl::StrCat("archive: manifest.json names \"",
                                                   path.get<std::string>(),
                                                   "\", which the archive does not hold"));
  }
  Descriptor desc;
  desc.digest = it->second.digest;
  desc.size = it->second.size;
  desc.media_type = std::string(media_type);
  if (media_type.empty()) {  // a layer: typed by its magic bytes, as containerd does
    switch (it->second.compression) {
      case archive::Compression::kNone:
        desc.media_type = "application/vnd.docker.image.rootfs.diff.tar";
        break;
      case archive::Compression::kGzip:
        desc.media_type = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        break;
      case archive::Compression::kZstd:
        desc.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
        break;
    }
  }
  return desc;
}

// docker save's manifest.json: each entry made into a Docker schema2 manifest.
absl::Status PlanDocker(Job& job, Plan& plan, std::vector<Descriptor>& top) {
  nlohmann::json doc = nlohmann::json::parse(job.archive.documents.at("manifest.json"), nullptr,
                                             false);
  if (!doc.is_array()) {
    return absl::InvalidArgumentError("archive: entry \"manifest.json\": not a JSON array");
  }
  for (const nlohmann::json& entry : doc) {
    if (!entry.is_object() || !entry.contains("Config") ||
        !entry.value("Layers", nlohmann::json()).is_array()) {
      return absl::InvalidArgumentError(
          "archive: entry \"manifest.json\": an entry without Config or Layers");
    }
    images::Manifest manifest;
    manifest.media_type = std::string(images::kDockerManifest);
    BERTH_ASSIGN_OR_RETURN(manifest.config,
                           DockerFile(job, entry["Config"], images::kDockerConfig));
    for (const nlohmann::json& layer : entry["Layers"]) {
      BERTH_ASSIGN_OR_RETURN(Descriptor desc, DockerFile(job, layer, ""));
      manifest.layers.push_back(std::move(desc));
    }
    BERTH_ASSIGN_OR_RETURN(Descriptor desc,
                           job.StoreMade(images::kDockerManifest, images::ToJson(manifest)));
    BERTH_RETURN_IF_ERROR(job.Walk(plan, desc, "manifest.json", 0));
    top.push_back(desc);
    nlohmann::json tags = entry.value("RepoTags", nlohmann::json::array());
    for (const nlohmann::json& tag : tags.is_array() ? tags : nlohmann::json::array()) {
      absl::StatusOr<images::Reference> ref =
          images::Reference::Parse(tag.is_string() ? tag.get<std::string>() : "");
      if (!ref.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "archive: manifest.json: RepoTags entry ", tag.dump(), ": ", ref.status().message()));
      }
      plan.records.push_back(images::Image{ref->String(), {}, desc, {}, {}});
    }
  }
  if (!job.request.index_name.empty()) {
    images::Index index;
    index.media_type = std::string(images::kOciIndex);
    index.manifests = top;
    BERTH_ASSIGN_OR_RETURN(Descriptor desc, job.StoreMade(images::kOciIndex, images::ToJson(index)));
    plan.indexes.push_back(IndexNode{desc, std::move(index)});
  }
  return absl::OkStatus();
}

absl::Status Label(const Job& job, const Digest& digest, const content::Labels& labels) {
  if (labels.empty()) {
    return absl::OkStatus();
  }
  content::Info info;
  info.digest = digest;
  info.labels = labels;
  std::vector<std::string> paths;
  for (const auto& [key, value] : labels) {
    paths.push_back(absl::StrCat("labels.", key));
  }
  return job.content.Update(job.ctx, info, paths).status();
}

// Unpacks what the plan says, then labels children before parents and the records' targets
// last, then stores the records.
absl::StatusOr<std::vector<images::Image>> Finish(const Job& job, Plan& plan,
                                                  snapshots::Unpacker* unpacker,
                                                  images::ImageStore& image_store) {
  for (const ManifestNode& node : plan.manifests) {
    std::vector<oci::Descriptor> layers(node.manifest.layers.begin(), node.manifest.layers.end());
    content::Labels config_labels;
    if (node.unpack && !layers.empty()) {
      std::vector<std::string> chain = images::ChainIds(node.diff_ids);
      for (const oci::Descriptor& layer : layers) {
        job.Emit(layer, State::kUnpacking);
      }
      BERTH_RETURN_IF_ERROR(unpacker->Unpack(job.ctx, layers, chain, {}).status());
      for (const oci::Descriptor& layer : layers) {
        job.Emit(layer, State::kDone);
      }
      config_labels[absl::StrCat("containerd.io/gc.ref.snapshot.", job.request.snapshotter)] =
          chain.back();
    }
    BERTH_RETURN_IF_ERROR(Label(job, node.manifest.config.digest, config_labels));
    content::Labels labels = {
        {"containerd.io/gc.ref.content.config", node.manifest.config.digest.ToString()}};
    for (size_t i = 0; i < layers.size(); ++i) {
      labels[absl::StrCat("containerd.io/gc.ref.content.l.", i)] = layers[i].digest.ToString();
    }
    BERTH_RETURN_IF_ERROR(Label(job, node.desc.digest, labels));
  }
  for (const IndexNode& node : plan.indexes) {
    content::Labels labels;
    for (size_t i = 0; i < node.index.manifests.size(); ++i) {
      labels[absl::StrCat("containerd.io/gc.ref.content.m.", i)] =
          node.index.manifests[i].digest.ToString();
    }
    BERTH_RETURN_IF_ERROR(Label(job, node.desc.digest, labels));
  }
  // No gc.root: each record's own lease (HoldingImageStore, image_holds.h) holds its target.
  std::vector<images::Image> stored;
  for (const images::Image& record : plan.records) {
    absl::StatusOr<images::Image> image = image_store.Create(job.ctx, record);
    if (image.status().code() == absl::StatusCode::kAlreadyExists) {
      image = image_store.Update(job.ctx, record, {"target"});
    }
    BERTH_RETURN_IF_ERROR(image.status());
    stored.push_back(*std::move(image));
  }
  return stored;
}

}  // namespace

Importer::Importer(content::ContentStore& content, leases::LeaseManager& leases,
                   snapshots::Unpacker* unpacker, images::ImageStore& images,
                   ImporterOptions options)
    : ImageStores(content, leases, unpacker, images), options_(options) {}

absl::StatusOr<std::vector<images::Image>> Importer::Import(const Context& caller,
                                                            ByteSource& tar,
                                                            const ImportRequest& request,
                                                            const BlobEventFn& progress) {
  images::Platform want = images::HostPlatform();
  if (!request.platform.empty()) {
    BERTH_ASSIGN_OR_RETURN(want, images::ParsePlatform(request.platform));
  }
  if (request.unpack && unpacker_ == nullptr) {
    return absl::FailedPreconditionError("cannot unpack: imaged has no snapshotd");
  }
  if (!request.index_name.empty()) {
    BERTH_RETURN_IF_ERROR(images::Reference::Parse(request.index_name).status());
  }
  Context ctx = caller;
  ctx.lease.clear();
  BERTH_ASSIGN_OR_RETURN(leases::Lease lease,
                         leases_.Create(ctx, "",
                                        {{kGcExpire, Rfc3339(absl::Now() + absl::Hours(1))},
                                         {kImportLeaseLabel, "import"},
                                         {kPullLeaseLabel, "import"}}));
  ctx.lease = lease.id;
  absl::StatusOr<std::vector<images::Image>> result = [&]()
      -> absl::StatusOr<std::vector<images::Image>> {
    BERTH_ASSIGN_OR_RETURN(
        ArchiveContents archive,
        ReceiveArchive(ctx, tar, content_, leases_,
                       ReceiveOptions{options_.limits, options_.progress_step}, progress));
    Job job{ctx, content_, archive, request, want, progress};
    Plan plan;
    std::vector<Descriptor> top;
    if (archive.documents.count("index.json") != 0) {
      BERTH_RETURN_IF_ERROR(PlanOci(job, plan, top));
    } else if (archive.documents.count("manifest.json") != 0) {
      BERTH_RETURN_IF_ERROR(PlanDocker(job, plan, top));
    } else {
      return absl::InvalidArgumentError(
          "archive: neither an OCI layout (index.json) nor a docker save (manifest.json)");
    }
    if (!request.index_name.empty()) {
      BERTH_ASSIGN_OR_RETURN(images::Reference ref, images::Reference::Parse(request.index_name));
      plan.records.push_back(images::Image{ref.String(), {}, plan.indexes.back().desc, {}, {}});
    }
    if (plan.records.empty()) {
      return absl::InvalidArgumentError(
          "archive: names no image (no io.containerd.image.name annotation, no "
          "org.opencontainers.image.ref.name holding a reference, no RepoTags); give an index "
          "name");
    }
    return Finish(job, plan, unpacker_, images_);
  }();

  Context cleanup;
  cleanup.ns = ctx.ns;
  cleanup.deadline = absl::Now() + absl::Seconds(30);
  if (absl::Status deleted = leases_.Delete(cleanup, lease.id, false); !deleted.ok()) {
    BERTH_LOG(Warn) << "import: deleting lease " << lease.id << ": " << deleted
                    << " (it expires by itself)";
  }
  return result;
}

}  // namespace berth::imaged
