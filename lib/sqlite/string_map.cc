#include "lib/sqlite/string_map.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace berth::sqlite {

std::string EncodeStringMap(const std::map<std::string, std::string>& map) {
  return nlohmann::json(map).dump();
}

absl::StatusOr<std::map<std::string, std::string>> DecodeStringMap(absl::string_view text) {
  nlohmann::json json =
      nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    return absl::DataLossError("not a JSON object");
  }
  std::map<std::string, std::string> map;
  for (const auto& [key, value] : json.items()) {
    if (!value.is_string()) {
      return absl::DataLossError(absl::StrCat("the value of \"", key, "\" is not a string"));
    }
    map[key] = value.get<std::string>();
  }
  return map;
}

}  // namespace berth::sqlite
