#pragma once

// A string-to-string map (labels, annotations) in one sqlite TEXT column, as a JSON object:
// readable with sqlite3's json functions and by a person at the shell. contentd keeps its own
// older length-prefixed encoding (services/contentd/local_labels.h).

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::sqlite {

std::string EncodeStringMap(const std::map<std::string, std::string>& map);

// DataLoss when `text` is not a JSON object whose values are all strings; the message says
// which key. Callers add which row and column.
absl::StatusOr<std::map<std::string, std::string>> DecodeStringMap(absl::string_view text);

}  // namespace berth::sqlite
