#pragma once

// OCI image documents (image-spec v1.1: index, manifest, config) and their Docker schema2
// twins (manifest list, manifest), parsed from untrusted bytes and validated before anything
// is fetched on their word:
// - a document over kMaxDocumentSize (4 MiB) is refused before parsing, as containerd does;
// - every descriptor has a known-shaped media type, a valid digest and a size >= 0;
// - a document's own mediaType, when present, must agree with what it was served or stored as;
// - an ambiguous document (CVE-2021-41190: an index that also has "config" or "layers", a
//   manifest that also has "manifests") is refused, whatever it claims to be.
// Errors are InvalidArgument naming the document and the field.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/oci/descriptor.h"

namespace berth::images {

inline constexpr absl::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr absl::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr absl::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr absl::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr absl::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr absl::string_view kDockerConfig =
    "application/vnd.docker.container.image.v1+json";

inline constexpr int64_t kMaxDocumentSize = int64_t{4} << 20;

bool IsIndexType(absl::string_view media_type);     // OCI index, Docker manifest list
bool IsManifestType(absl::string_view media_type);  // OCI manifest, Docker schema2 manifest
bool IsConfigType(absl::string_view media_type);
// OCI and Docker layer types: tar, +gzip, +zstd, and their non-distributable/foreign forms.
bool IsLayerType(absl::string_view media_type);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string os_version;
  std::vector<std::string> os_features;
};

struct Descriptor : oci::Descriptor {
  std::optional<Platform> platform;  // index entries only
  std::vector<std::string> urls;
  std::string artifact_type;
};

struct Index {
  std::string media_type;  // as served/stored (the document's own, when it names one)
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

struct Manifest {
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

// The parts of an image config a runtime needs (image-spec config.md).
struct ImageConfig {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::string stop_signal;
  std::map<std::string, std::string> labels;
  std::vector<std::string> exposed_ports;
  std::vector<std::string> volumes;
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, one per layer, bottom first
};

// `media_type` is what the document was served or stored as (Content-Type, or the descriptor
// that pointed at it); empty when unknown, then the document's own mediaType decides and an
// index or manifest without one is taken for what its fields say.
absl::StatusOr<Index> ParseIndex(absl::string_view data, absl::string_view media_type);
absl::StatusOr<Manifest> ParseManifest(absl::string_view data, absl::string_view media_type);
absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view data);

// Serialises a manifest or index back to the canonical JSON the registry receives.
std::string ToJson(const Manifest& manifest);
std::string ToJson(const Index& index);

// The platform this process runs on, as OCI names it (GOOS/GOARCH style: linux, amd64, arm64
// with variant v8, arm with the kernel's variant).
Platform HostPlatform();

// Whether an image for `have` runs on `want`: same os and architecture, and a variant that
// `want` can run (an arm64 variant defaults to v8; arm v7 runs v6 and v5; an empty variant on
// either side matches). Returns a rank, lower is better (exact variant first), or nullopt.
std::optional<int> MatchPlatform(const Platform& want, const Platform& have);

// "linux/arm64/v8" -> Platform; InvalidArgument for a malformed specifier.
absl::StatusOr<Platform> ParsePlatform(absl::string_view text);
std::string FormatPlatform(const Platform& platform);

// The index entry for `want`: the best MatchPlatform rank among its manifests; an entry
// without a platform matches last. NotFound naming `name` when none matches.
absl::StatusOr<Descriptor> ChooseManifest(const Index& index, const Platform& want,
                                          absl::string_view name);

// containerd's identity.ChainID for each prefix of `diff_ids`: chain[0] = diff_ids[0],
// chain[i] = sha256(chain[i-1] + " " + diff_ids[i]), as "sha256:<hex>" strings. The snapshot
// an image is unpacked into is named by the last one.
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

}  // namespace berth::images
