#include "services/contentd/local_labels.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace berth::contentd::internal {

namespace {

constexpr size_t kMaxLabelSize = 4096;

void AppendField(std::string* out, absl::string_view field) {
  absl::StrAppend(out, field.size(), ":", field);
}

bool ReadField(absl::string_view* in, std::string* field) {
  size_t colon = in->find(':');
  if (colon == absl::string_view::npos) {
    return false;
  }
  uint64_t len = 0;
  if (!absl::SimpleAtoi(in->substr(0, colon), &len) || len > in->size() - colon - 1) {
    return false;
  }
  *field = std::string(in->substr(colon + 1, len));
  in->remove_prefix(colon + 1 + len);
  return true;
}

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

std::string EncodeLabels(const LabelMap& labels) {
  std::string out;
  for (const auto& [key, value] : labels) {
    if (value.empty()) {
      continue;
    }
    AppendField(&out, key);
    AppendField(&out, value);
  }
  return out;
}

absl::StatusOr<LabelMap> DecodeLabels(absl::string_view encoded) {
  LabelMap labels;
  while (!encoded.empty()) {
    std::string key;
    std::string value;
    if (!ReadField(&encoded, &key) || !ReadField(&encoded, &value)) {
      return absl::DataLossError("malformed labels in metadata.db");
    }
    labels.emplace(std::move(key), std::move(value));
  }
  return labels;
}

}  // namespace berth::contentd::internal
