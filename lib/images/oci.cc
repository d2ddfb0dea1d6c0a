#include "lib/images/oci.h"

#include <algorithm>
#include <climits>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/base/digest.h"

namespace berth::images {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(absl::string_view what, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
}

// The JSON object in `data`, after the size check.
absl::StatusOr<Json> ParseObject(absl::string_view what, absl::string_view data) {
  if (static_cast<int64_t>(data.size()) > kMaxDocumentSize) {
    return Invalid(what, absl::StrCat(data.size(), " bytes is over the limit of ",
                                      kMaxDocumentSize, " bytes (4 MiB)"));
  }
  Json doc = Json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return Invalid(what, "not valid JSON");
  }
  if (!doc.is_object()) {
    return Invalid(what, "not a JSON object");
  }
  return doc;
}

// Readers that refuse a wrong type instead of throwing.
absl::Status GetString(const Json& obj, const char* key, absl::string_view what,
                       std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return absl::OkStatus();
  }
  if (!it->is_string()) {
    return Invalid(what, absl::StrCat("\"", key, "\" must be a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status GetStrings(const Json& obj, const char* key, absl::string_view what,
                        std::vector<std::string>* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return absl::OkStatus();
  }
  if (!it->is_array()) {
    return Invalid(what, absl::StrCat("\"", key, "\" must be an array of strings"));
  }
  for (const Json& v : *it) {
    if (!v.is_string()) {
      return Invalid(what, absl::StrCat("\"", key, "\" must be an array of strings"));
    }
    out->push_back(v.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status GetStringMap(const Json& obj, const char* key, absl::string_view what,
                          std::map<std::string, std::string>* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return absl::OkStatus();
  }
  if (!it->is_object()) {
    return Invalid(what, absl::StrCat("\"", key, "\" must be an object of strings"));
  }
  for (auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      return Invalid(what, absl::StrCat("\"", key, "\".\"", k, "\" must be a string"));
    }
    (*out)[k] = v.get<std::string>();
  }
  return absl::OkStatus();
}

// The keys of an object ({"80/tcp": {}}), sorted.
absl::Status GetKeys(const Json& obj, const char* key, absl::string_view what,
                     std::vector<std::string>* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return absl::OkStatus();
  }
  if (!it->is_object()) {
    return Invalid(what, absl::StrCat("\"", key, "\" must be an object"));
  }
  for (auto& item : it->items()) {
    out->push_back(item.key());
  }
  return absl::OkStatus();
}

// A media type's shape (RFC 6838: type "/" subtype, restricted characters).
bool IsMediaTypeShaped(absl::string_view mt) {
  size_t slash = mt.find('/');
  if (slash == absl::string_view::npos || slash == 0 || slash + 1 == mt.size() ||
      mt.size() > 255) {
    return false;
  }
  for (size_t i = 0; i < mt.size(); ++i) {
    char c = mt[i];
    if (i == slash) {
      continue;
    }
    if (!absl::ascii_isalnum(c) && !absl::StrContains("!#$&-^_.+", c)) {
      return false;
    }
  }
  return true;
}

absl::Status ParsePlatformJson(const Json& obj, absl::string_view what, Platform* out) {
  if (!obj.is_object()) {
    return Invalid(what, "\"platform\" must be an object");
  }
  for (absl::Status st : {GetString(obj, "os", what, &out->os),
                          GetString(obj, "architecture", what, &out->architecture),
                          GetString(obj, "variant", what, &out->variant),
                          GetString(obj, "os.version", what, &out->os_version),
                          GetStrings(obj, "os.features", what, &out->os_features)}) {
    if (!st.ok()) {
      return st;
    }
  }
  if (out->os.empty() || out->architecture.empty()) {
    return Invalid(what, "a platform needs \"os\" and \"architecture\"");
  }
  return absl::OkStatus();
}

absl::StatusOr<Descriptor> ParseDescriptor(const Json& obj, absl::string_view what) {
  if (!obj.is_object()) {
    return Invalid(what, "a descriptor must be an object");
  }
  Descriptor d;
  std::string digest;
  for (absl::Status st : {GetString(obj, "mediaType", what, &d.media_type),
                          GetString(obj, "digest", what, &digest),
                          GetStrings(obj, "urls", what, &d.urls),
                          GetString(obj, "artifactType", what, &d.artifact_type),
                          GetStringMap(obj, "annotations", what, &d.annotations)}) {
    if (!st.ok()) {
      return st;
    }
  }
  if (!IsMediaTypeShaped(d.media_type)) {
    return Invalid(what, absl::StrCat("media type \"", d.media_type, "\" is not valid"));
  }
  absl::StatusOr<Digest> parsed = Digest::Parse(digest);
  if (!parsed.ok()) {
    return Invalid(what, parsed.status().message());
  }
  d.digest = *parsed;
  auto size = obj.find("size");
  if (size == obj.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return Invalid(what, "\"size\" must be a whole number of bytes >= 0");
  }
  d.size = size->get<int64_t>();
  if (auto platform = obj.find("platform"); platform != obj.end() && !platform->is_null()) {
    d.platform.emplace();
    if (absl::Status st = ParsePlatformJson(*platform, what, &*d.platform); !st.ok()) {
      return st;
    }
  }
  return d;
}

// The document's own mediaType against what it was served as; returns the one to use.
absl::StatusOr<std::string> AgreeOnMediaType(const Json& doc, absl::string_view what,
                                             absl::string_view served,
                                             bool (*expected_kind)(absl::string_view)) {
  std::string own;
  if (absl::Status st = GetString(doc, "mediaType", what, &own); !st.ok()) {
    return st;
  }
  if (!own.empty() && !served.empty() && own != served) {
    return Invalid(what, absl::StrCat("it says it is ", own, " but was served as ", served));
  }
  std::string media_type = own.empty() ? std::string(served) : own;
  if (!media_type.empty() && !expected_kind(media_type)) {
    return Invalid(what, absl::StrCat("unsupported media type ", media_type));
  }
  auto version = doc.find("schemaVersion");
  if (version == doc.end() || !version->is_number_integer() || version->get<int>() != 2) {
    return Invalid(what, "\"schemaVersion\" must be 2");
  }
  return media_type;
}

}  // namespace

bool IsIndexType(absl::string_view mt) { return mt == kOciIndex || mt == kDockerManifestList; }
bool IsManifestType(absl::string_view mt) { return mt == kOciManifest || mt == kDockerManifest; }
bool IsConfigType(absl::string_view mt) { return mt == kOciConfig || mt == kDockerConfig; }

bool IsLayerType(absl::string_view mt) {
  for (absl::string_view base : {"application/vnd.oci.image.layer.v1.tar",
                                 "application/vnd.oci.image.layer.nondistributable.v1.tar"}) {
    if (mt == base || mt == absl::StrCat(base, "+gzip") || mt == absl::StrCat(base, "+zstd")) {
      return true;
    }
  }
  return mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
         mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         mt == "application/vnd.docker.image.rootfs.diff.tar";
}

absl::StatusOr<Index> ParseIndex(absl::string_view data, absl::string_view media_type) {
  constexpr absl::string_view kWhat = "image index";
  absl::StatusOr<Json> doc = ParseObject(kWhat, data);
  if (!doc.ok()) {
    return doc.status();
  }
  if (doc->contains("config") || doc->contains("layers")) {
    return Invalid(kWhat, "it has \"config\" or \"layers\" besides \"manifests\": an "
                          "ambiguous document is refused (CVE-2021-41190)");
  }
  Index index;
  absl::StatusOr<std::string> mt = AgreeOnMediaType(*doc, kWhat, media_type, IsIndexType);
  if (!mt.ok()) {
    return mt.status();
  }
  index.media_type = mt->empty() ? std::string(kOciIndex) : *mt;
  auto manifests = doc->find("manifests");
  if (manifests == doc->end() || !manifests->is_array()) {
    return Invalid(kWhat, "\"manifests\" must be an array");
  }
  for (size_t i = 0; i < manifests->size(); ++i) {
    absl::StatusOr<Descriptor> d =
        ParseDescriptor((*manifests)[i], absl::StrCat(kWhat, " manifests[", i, "]"));
    if (!d.ok()) {
      return d.status();
    }
    index.manifests.push_back(*std::move(d));
  }
  if (absl::Status st = GetStringMap(*doc, "annotations", kWhat, &index.annotations); !st.ok()) {
    return st;
  }
  return index;
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view data, absl::string_view media_type) {
  constexpr absl::string_view kWhat = "image manifest";
  absl::StatusOr<Json> doc = ParseObject(kWhat, data);
  if (!doc.ok()) {
    return doc.status();
  }
  if (doc->contains("manifests")) {
    return Invalid(kWhat, "it has \"manifests\" besides \"config\" and \"layers\": an "
                          "ambiguous document is refused (CVE-2021-41190)");
  }
  Manifest manifest;
  absl::StatusOr<std::string> mt = AgreeOnMediaType(*doc, kWhat, media_type, IsManifestType);
  if (!mt.ok()) {
    return mt.status();
  }
  manifest.media_type = mt->empty() ? std::string(kOciManifest) : *mt;
  auto config = doc->find("config");
  if (config == doc->end()) {
    return Invalid(kWhat, "\"config\" is missing");
  }
  absl::StatusOr<Descriptor> cfg = ParseDescriptor(*config, absl::StrCat(kWhat, " config"));
  if (!cfg.ok()) {
    return cfg.status();
  }
  manifest.config = *std::move(cfg);
  auto layers = doc->find("layers");
  if (layers == doc->end() || !layers->is_array()) {
    return Invalid(kWhat, "\"layers\" must be an array");
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    absl::StatusOr<Descriptor> d =
        ParseDescriptor((*layers)[i], absl::StrCat(kWhat, " layers[", i, "]"));
    if (!d.ok()) {
      return d.status();
    }
    manifest.layers.push_back(*std::move(d));
  }
  if (absl::Status st = GetStringMap(*doc, "annotations", kWhat, &manifest.annotations);
      !st.ok()) {
    return st;
  }
  return manifest;
}

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view data) {
  constexpr absl::string_view kWhat = "image config";
  absl::StatusOr<Json> doc = ParseObject(kWhat, data);
  if (!doc.ok()) {
    return doc.status();
  }
  ImageConfig c;
  for (absl::Status st : {GetString(*doc, "os", kWhat, &c.os),
                          GetString(*doc, "architecture", kWhat, &c.architecture),
                          GetString(*doc, "variant", kWhat, &c.variant)}) {
    if (!st.ok()) {
      return st;
    }
  }
  if (auto config = doc->find("config"); config != doc->end() && !config->is_null()) {
    if (!config->is_object()) {
      return Invalid(kWhat, "\"config\" must be an object");
    }
    const Json& cc = *config;
    for (absl::Status st : {GetString(cc, "User", kWhat, &c.user),
                            GetStrings(cc, "Env", kWhat, &c.env),
                            GetStrings(cc, "Entrypoint", kWhat, &c.entrypoint),
                            GetStrings(cc, "Cmd", kWhat, &c.cmd),
                            GetString(cc, "WorkingDir", kWhat, &c.working_dir),
                            GetString(cc, "StopSignal", kWhat, &c.stop_signal),
                            GetStringMap(cc, "Labels", kWhat, &c.labels),
                            GetKeys(cc, "ExposedPorts", kWhat, &c.exposed_ports),
                            GetKeys(cc, "Volumes", kWhat, &c.volumes)}) {
      if (!st.ok()) {
        return st;
      }
    }
  }
  auto rootfs = doc->find("rootfs");
  if (rootfs == doc->end() || !rootfs->is_object()) {
    return Invalid(kWhat, "\"rootfs\" must be an object");
  }
  std::string type;
  if (absl::Status st = GetString(*rootfs, "type", kWhat, &type); !st.ok()) {
    return st;
  }
  if (type != "layers") {
    return Invalid(kWhat, absl::StrCat("rootfs.type must be \"layers\", not \"", type, "\""));
  }
  if (absl::Status st = GetStrings(*rootfs, "diff_ids", kWhat, &c.diff_ids); !st.ok()) {
    return st;
  }
  for (const std::string& id : c.diff_ids) {
    if (absl::StatusOr<Digest> d = Digest::Parse(id); !d.ok()) {
      return Invalid(kWhat, absl::StrCat("rootfs.diff_ids: ", d.status().message()));
    }
  }
  return c;
}

namespace {

Json DescriptorJson(const Descriptor& d) {
  Json j = {{"mediaType", d.media_type}, {"digest", d.digest.ToString()}, {"size", d.size}};
  if (!d.urls.empty()) {
    j["urls"] = d.urls;
  }
  if (!d.artifact_type.empty()) {
    j["artifactType"] = d.artifact_type;
  }
  if (!d.annotations.empty()) {
    j["annotations"] = d.annotations;
  }
  if (d.platform.has_value()) {
    Json p = {{"os", d.platform->os}, {"architecture", d.platform->architecture}};
    if (!d.platform->variant.empty()) {
      p["variant"] = d.platform->variant;
    }
    if (!d.platform->os_version.empty()) {
      p["os.version"] = d.platform->os_version;
    }
    if (!d.platform->os_features.empty()) {
      p["os.features"] = d.platform->os_features;
    }
    j["platform"] = p;
  }
  return j;
}

}  // namespace

std::string ToJson(const Manifest& manifest) {
  Json j = {{"schemaVersion", 2}, {"mediaType", manifest.media_type}};
  j["config"] = DescriptorJson(manifest.config);
  j["layers"] = Json::array();
  for (const Descriptor& layer : manifest.layers) {
    j["layers"].push_back(DescriptorJson(layer));
  }
  if (!manifest.annotations.empty()) {
    j["annotations"] = manifest.annotations;
  }
  return j.dump();
}

std::string ToJson(const Index& index) {
  Json j = {{"schemaVersion", 2}, {"mediaType", index.media_type}};
  j["manifests"] = Json::array();
  for (const Descriptor& m : index.manifests) {
    j["manifests"].push_back(DescriptorJson(m));
  }
  if (!index.annotations.empty()) {
    j["annotations"] = index.annotations;
  }
  return j.dump();
}

Platform HostPlatform() {
  Platform p;
  p.os = "linux";
#if defined(__x86_64__)
  p.architecture = "amd64";
#elif defined(__aarch64__)
  p.architecture = "arm64";
  p.variant = "v8";
#elif defined(__arm__)
  p.architecture = "arm";
  p.variant = "v7";
#elif defined(__i386__)
  p.architecture = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  p.architecture = "ppc64le";
#elif defined(__s390x__)
  p.architecture = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  p.architecture = "riscv64";
#else
  p.architecture = "unknown";
#endif
  return p;
}

namespace {

// containerd's platforms.Normalize: arm64's default variant is v8; "aarch64" is arm64, etc.
Platform Normalize(Platform p) {
  if (p.architecture == "aarch64") {
    p.architecture = "arm64";
  } else if (p.architecture == "x86_64" || p.architecture == "x86-64") {
    p.architecture = "amd64";
  } else if (p.architecture == "i386") {
    p.architecture = "386";
  } else if (p.architecture == "armhf") {
    p.architecture = "arm";
    p.variant = "v7";
  } else if (p.architecture == "armel") {
    p.architecture = "arm";
    p.variant = "v6";
  }
  if (p.architecture == "arm64" && (p.variant.empty() || p.variant == "8")) {
    p.variant = "v8";
  }
  if (p.architecture == "arm" && p.variant.size() == 1) {
    p.variant = "v" + p.variant;
  }
  return p;
}

}  // namespace

std::optional<int> MatchPlatform(const Platform& want_in, const Platform& have_in) {
  Platform want = Normalize(want_in);
  Platform have = Normalize(have_in);
  if (want.os != have.os || want.architecture != have.architecture) {
    return std::nullopt;
  }
  if (want.variant == have.variant) {
    return 0;
  }
  if (have.variant.empty() || want.variant.empty()) {
    return 1;
  }
  if (want.architecture == "arm") {
    // An armv7 host runs v6 and v5 images, preferring the newest.
    static const char* const kOrder[] = {"v8", "v7", "v6", "v5"};
    auto pos = [](const std::string& v) {
      return std::find(std::begin(kOrder), std::end(kOrder), v) - std::begin(kOrder);
    };
    auto w = pos(want.variant);
    auto h = pos(have.variant);
    if (w < 4 && h < 4 && h > w) {
      return static_cast<int>(1 + h - w);
    }
  }
  return std::nullopt;
}

absl::StatusOr<Platform> ParsePlatform(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty() ||
      (parts.size() == 3 && parts[2].empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("platform \"", text, "\": want os/architecture[/variant]"));
  }
  Platform p;
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) {
    p.variant = parts[2];
  }
  return Normalize(p);
}

std::string FormatPlatform(const Platform& p) {
  return p.variant.empty() ? absl::StrCat(p.os, "/", p.architecture)
                           : absl::StrCat(p.os, "/", p.architecture, "/", p.variant);
}

absl::StatusOr<Descriptor> ChooseManifest(const Index& index, const Platform& want,
                                          absl::string_view name) {
  const Descriptor* best = nullptr;
  int best_rank = INT_MAX;
  for (const Descriptor& entry : index.manifests) {
    if (!IsManifestType(entry.media_type)) {
      continue;
    }
    int rank = INT_MAX - 1;
    if (entry.platform.has_value()) {
      std::optional<int> match = MatchPlatform(want, *entry.platform);
      if (!match.has_value()) {
        continue;
      }
      rank = *match;
    }
    if (rank < best_rank) {
      best = &entry;
      best_rank = rank;
    }
  }
  if (best == nullptr) {
    return absl::NotFoundError(absl::StrCat(name, ": no manifest for platform ",
                                            FormatPlatform(want)));
  }
  return *best;
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> chain;
  chain.reserve(diff_ids.size());
  for (const std::string& diff_id : diff_ids) {
    chain.push_back(chain.empty() ? diff_id
                                  : Sha256Of(absl::StrCat(chain.back(), " ", diff_id)).ToString());
  }
  return chain;
}

}  // namespace berth::images
