#include "lib/base/labels.h"

#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace berth {

namespace {

constexpr size_t kMaxLabelSize = 4096;

}  // namespace

absl::Status ValidateLabels(const LabelMap& labels) {
  for (const auto& [key, value] : labels) {
    if (key.size() + value.size() > kMaxLabelSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label key and value greater than maximum size (", kMaxLabelSize,
          " bytes), key: ", absl::string_view(key).substr(0, 10)));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyLabelUpdate(LabelMap* current, const LabelMap& given,
                              const std::vector<std::string>& fieldpaths, absl::string_view what) {
  LabelMap updated = *current;
  if (fieldpaths.empty()) {
    updated = given;
  }
  for (const std::string& path : fieldpaths) {
    if (path == "labels") {
      updated = given;
    } else if (absl::StartsWith(path, "labels.")) {
      std::string key = path.substr(7);
      auto it = given.find(key);
      if (it == given.end() || it->second.empty()) {
        updated.erase(key);
      } else {
        updated[key] = it->second;
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot update \"", path, "\" field on ", what));
    }
  }
  for (auto it = updated.begin(); it != updated.end();) {
    it = it->second.empty() ? updated.erase(it) : std::next(it);
  }
  if (absl::Status st = ValidateLabels(updated); !st.ok()) {
    return st;
  }
  *current = std::move(updated);
  return absl::OkStatus();
}

}  // namespace berth
