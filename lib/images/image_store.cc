#include "lib/images/image_store.h"

#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/base/status_macros.h"

namespace berth::images {
namespace {

constexpr size_t kMaxNameBytes = 4096;
constexpr absl::string_view kLabelsPrefix = "labels.";
constexpr absl::string_view kAnnotationsPrefix = "annotations.";

// Sets or (for an absent or empty value) removes `key` in `*map` from `given`.
void CopyKey(LabelMap* map, const LabelMap& given, const std::string& key) {
  auto it = given.find(key);
  if (it == given.end() || it->second.empty()) {
    map->erase(key);
  } else {
    (*map)[key] = it->second;
  }
}

LabelMap WithoutEmptyValues(LabelMap map) {
  for (auto it = map.begin(); it != map.end();) {
    it = it->second.empty() ? map.erase(it) : std::next(it);
  }
  return map;
}

std::optional<std::string> NonEmpty(const std::string& value) {
  return value.empty() ? std::nullopt : std::optional<std::string>(value);
}

std::optional<std::string> Lookup(const LabelMap& map, const std::vector<std::string>& key) {
  auto it = map.find(absl::StrJoin(key, "."));
  return it == map.end() ? std::nullopt : std::optional<std::string>(it->second);
}

}  // namespace

absl::Status ValidateImageName(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("image name must not be empty");
  }
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image name is ", name.size(), " bytes, over the limit of ", kMaxNameBytes));
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("image name \"", absl::CEscape(name), "\" has a control character"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateImage(const Image& image) {
  BERTH_RETURN_IF_ERROR(ValidateImageName(image.name));
  const std::string what = absl::StrCat("image \"", image.name, "\": ");
  if (absl::Status st = ValidateLabels(image.labels); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, "labels: ", st.message()));
  }
  if (image.target.digest.IsEmpty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, "target digest must be set"));
  }
  if (image.target.size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, "target size must be greater than zero"));
  }
  if (image.target.media_type.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, "target media type must be set"));
  }
  return absl::OkStatus();
}

absl::Status ApplyImageUpdate(Image* current, const Image& given,
                              const std::vector<std::string>& fieldpaths) {
  Image updated = *current;
  if (fieldpaths.empty()) {
    updated.labels = WithoutEmptyValues(given.labels);
    updated.target = given.target;
    updated.target.annotations = WithoutEmptyValues(given.target.annotations);
  }
  for (const std::string& path : fieldpaths) {
    if (path == "labels") {
      updated.labels = WithoutEmptyValues(given.labels);
    } else if (absl::StartsWith(path, kLabelsPrefix)) {
      CopyKey(&updated.labels, given.labels, path.substr(kLabelsPrefix.size()));
    } else if (path == "annotations") {
      updated.target.annotations = WithoutEmptyValues(given.target.annotations);
    } else if (absl::StartsWith(path, kAnnotationsPrefix)) {
      CopyKey(&updated.target.annotations, given.target.annotations,
              path.substr(kAnnotationsPrefix.size()));
    } else if (path == "target") {
      updated.target = given.target;
      updated.target.annotations = WithoutEmptyValues(given.target.annotations);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("cannot update \"", path,
                                                     "\" field on image \"", current->name, "\""));
    }
  }
  *current = std::move(updated);
  return absl::OkStatus();
}

filters::Adaptor ImageAdaptor(const Image& image) {
  return [&image](const std::vector<std::string>& path) -> std::optional<std::string> {
    if (path.empty()) {
      return std::nullopt;
    }
    std::vector<std::string> rest(path.begin() + 1, path.end());
    if (path[0] == "name" && rest.empty()) {
      return NonEmpty(image.name);
    }
    if (path[0] == "target" && rest.size() == 1 && rest[0] == "digest") {
      return NonEmpty(image.target.digest.ToString());
    }
    if (path[0] == "target" && rest.size() == 1 && rest[0] == "mediatype") {
      return NonEmpty(image.target.media_type);
    }
    if (path[0] == "labels") {
      return Lookup(image.labels, rest);
    }
    if (path[0] == "annotations") {
      return Lookup(image.target.annotations, rest);
    }
    return std::nullopt;
  };
}

}  // namespace berth::images
