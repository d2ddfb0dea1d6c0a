#include "lib/base/identifiers.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace berth {

absl::Status ValidateIdentifier(absl::string_view what, absl::string_view id) {
  constexpr size_t kMaxLength = 76;
  if (id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must not be empty"));
  }
  if (id.size() > kMaxLength) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", id, "\" is longer than ",
                                                   kMaxLength, " characters"));
  }
  bool prev_separator = true;  // the first character may not be a separator
  for (char c : id) {
    bool separator = c == '.' || c == '_' || c == '-';
    if (separator) {
      if (prev_separator) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, " \"", id, "\" is invalid: separators (. _ -) must sit between alphanumerics"));
      }
    } else if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " \"", id, "\" is invalid: only letters, digits, '.', '_' and '-' are allowed"));
    }
    prev_separator = separator;
  }
  if (prev_separator) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", id, "\" is invalid: it must end with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseId(absl::string_view id) {
  constexpr size_t kMaxLength = 255;
  if (id.empty()) {
    return absl::InvalidArgumentError("lease id must not be empty");
  }
  if (id.size() > kMaxLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease id \"", id.substr(0, 32), "...\" is longer than ", kMaxLength,
                     " bytes"));
  }
  for (char c : id) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(absl::StrCat(
          "lease id \"", absl::CHexEscape(id), "\" is invalid: only printable ASCII without "
          "spaces is allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace berth
