#include "lib/containers/container_store.h"

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/base/identifiers.h"

namespace berth::containers {
namespace {

constexpr absl::string_view kLabelsPrefix = "labels.";
constexpr absl::string_view kExtensionsPrefix = "extensions.";

LabelMap WithoutEmptyValues(LabelMap map) {
  for (auto it = map.begin(); it != map.end();) {
    it = it->second.empty() ? map.erase(it) : std::next(it);
  }
  return map;
}

std::optional<std::string> NonEmpty(const std::string& value) {
  return value.empty() ? std::nullopt : std::optional<std::string>(value);
}

}  // namespace

absl::Status ValidateContainer(const Container& container) {
  if (absl::Status st = ValidateIdentifier("container id", container.id); !st.ok()) {
    return st;
  }
  const std::string what = absl::StrCat("container \"", container.id, "\": ");
  for (const auto& [key, value] : container.extensions) {
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, "extension keys must not be empty"));
    }
  }
  if (absl::Status st = ValidateLabels(container.labels); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, "labels: ", st.message()));
  }
  if (container.runtime.name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, "runtime name must be set"));
  }
  if (!container.spec.IsSet()) {
    return absl::InvalidArgumentError(absl::StrCat(what, "spec must be set"));
  }
  if (!container.snapshot_key.empty() && container.snapshotter.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "snapshotter must be set if snapshot key is set"));
  }
  return absl::OkStatus();
}

absl::Status ApplyContainerUpdate(Container* current, const Container& given,
                                  const std::vector<std::string>& fieldpaths) {
  Container updated = *current;
  std::vector<std::string> paths = fieldpaths;
  if (paths.empty()) {
    // As containerd: a full replace covers these; the immutable fields must then match, so
    // that they can become mutable later without changing what a full replace means.
    paths = {"labels", "spec", "extensions", "image", "snapshotkey"};
    if (given.snapshotter != current->snapshotter) {
      return absl::InvalidArgumentError(
          absl::StrCat("container \"", current->id, "\": snapshotter is immutable"));
    }
    if (given.runtime.name != current->runtime.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("container \"", current->id, "\": runtime name is immutable"));
    }
  }
  for (const std::string& path : paths) {
    if (absl::StartsWith(path, kLabelsPrefix)) {
      const std::string key = path.substr(kLabelsPrefix.size());
      auto it = given.labels.find(key);
      if (it == given.labels.end() || it->second.empty()) {
        updated.labels.erase(key);
      } else {
        updated.labels[key] = it->second;
      }
    } else if (absl::StartsWith(path, kExtensionsPrefix)) {
      const std::string key = path.substr(kExtensionsPrefix.size());
      auto it = given.extensions.find(key);
      if (it == given.extensions.end()) {
        updated.extensions.erase(key);
      } else {
        updated.extensions[key] = it->second;
      }
    } else if (path == "labels") {
      updated.labels = WithoutEmptyValues(given.labels);
    } else if (path == "spec") {
      updated.spec = given.spec;
    } else if (path == "extensions") {
      updated.extensions = given.extensions;
    } else if (path == "image") {
      updated.image = given.image;
    } else if (path == "snapshotkey") {
      updated.snapshot_key = given.snapshot_key;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot update \"", path, "\" field on \"", current->id, "\""));
    }
  }
  *current = std::move(updated);
  return absl::OkStatus();
}

filters::Adaptor ContainerAdaptor(const Container& container) {
  return [&container](const std::vector<std::string>& path) -> std::optional<std::string> {
    if (path.empty()) {
      return std::nullopt;
    }
    if (path[0] == "id" && path.size() == 1) {
      return NonEmpty(container.id);
    }
    if (path[0] == "image" && path.size() == 1) {
      return NonEmpty(container.image);
    }
    if (path[0] == "snapshotter" && path.size() == 1) {
      return NonEmpty(container.snapshotter);
    }
    if (path[0] == "runtime" && path.size() == 2 && path[1] == "name") {
      return NonEmpty(container.runtime.name);
    }
    if (path[0] == "labels") {
      auto it = container.labels.find(absl::StrJoin(path.begin() + 1, path.end(), "."));
      return it == container.labels.end() ? std::nullopt
                                           : std::optional<std::string>(it->second);
    }
    return std::nullopt;
  };
}

}  // namespace berth::containers
