#include "services/contentd/local_labels.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace berth::contentd::internal {

namespace {

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
