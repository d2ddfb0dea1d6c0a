#include "lib/images/reference.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace berth::images {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

bool IsLowerAlnum(char c) { return absl::ascii_islower(c) || absl::ascii_isdigit(c); }

// [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
bool IsPathComponent(absl::string_view c) {
  size_t i = 0;
  auto alnum_run = [&]() {
    size_t start = i;
    while (i < c.size() && IsLowerAlnum(c[i])) {
      ++i;
    }
    return i > start;
  };
  if (!alnum_run()) {
    return false;
  }
  while (i < c.size()) {
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      ++i;
      if (i < c.size() && c[i] == '_') {
        ++i;
      }
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') {
        ++i;
      }
    } else {
      return false;
    }
    if (!alnum_run()) {
      return false;
    }
  }
  return true;
}

// A DNS label: alphanumerics, inner '-'.
bool IsDomainLabel(absl::string_view label) {
  if (label.empty() || label.front() == '-' || label.back() == '-') {
    return false;
  }
  for (char c : label) {
    if (!absl::ascii_isalnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

bool IsPort(absl::string_view port) {
  if (port.empty() || port.size() > 5) {
    return false;
  }
  for (char c : port) {
    if (!absl::ascii_isdigit(c)) {
      return false;
    }
  }
  return true;
}

bool IsDomain(absl::string_view domain) {
  absl::string_view host = domain;
  if (absl::StartsWith(domain, "[")) {  // [ipv6]:port
    size_t close = domain.find(']');
    if (close == absl::string_view::npos || close == 1) {
      return false;
    }
    for (char c : domain.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') {
        return false;
      }
    }
    absl::string_view rest = domain.substr(close + 1);
    return rest.empty() || (rest.front() == ':' && IsPort(rest.substr(1)));
  }
  if (size_t colon = domain.rfind(':'); colon != absl::string_view::npos) {
    if (!IsPort(domain.substr(colon + 1))) {
      return false;
    }
    host = domain.substr(0, colon);
  }
  if (host.empty()) {
    return false;
  }
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (!IsDomainLabel(label)) {
      return false;
    }
  }
  return true;
}

bool IsTag(absl::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagLength || tag.front() == '.' || tag.front() == '-') {
    return false;
  }
  for (char c : tag) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("invalid reference \"", text, "\": ", why));
}

}  // namespace

absl::StatusOr<Reference> Reference::Parse(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError("invalid reference: it is empty");
  }
  Reference ref;
  absl::string_view rest = text;
  if (size_t at = rest.find('@'); at != absl::string_view::npos) {
    absl::StatusOr<Digest> digest = Digest::Parse(rest.substr(at + 1));
    if (!digest.ok()) {
      return Invalid(text, digest.status().message());
    }
    ref.digest = *digest;
    rest = rest.substr(0, at);
  }
  // A tag follows the last ':' after the last '/'; a ':' before it is a port.
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos &&
      (last_slash == absl::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!IsTag(ref.tag)) {
      return Invalid(text, absl::StrCat("tag \"", ref.tag,
                                        "\" must be 1-128 of [A-Za-z0-9_.-], not starting "
                                        "with '.' or '-'"));
    }
  }
  if (rest.empty()) {
    return Invalid(text, "no repository name");
  }
  if (rest.size() > kMaxNameLength) {
    return Invalid(text, absl::StrCat("the name is longer than ", kMaxNameLength, " characters"));
  }
  absl::string_view path = rest;
  size_t first_slash = rest.find('/');
  if (first_slash != absl::string_view::npos) {
    absl::string_view first = rest.substr(0, first_slash);
    if (absl::StrContains(first, '.') || absl::StrContains(first, ':') || first == "localhost") {
      if (!IsDomain(first)) {
        return Invalid(text, absl::StrCat("\"", first, "\" is not a valid registry host"));
      }
      ref.domain = std::string(first);
      path = rest.substr(first_slash + 1);
    }
  }
  if (ref.domain.empty() || ref.domain == "index.docker.io") {
    ref.domain = std::string(kDockerHubDomain);
  }
  if (path.size() == 64 && path.find_first_not_of("0123456789abcdef") == absl::string_view::npos) {
    return Invalid(text, "a name of 64 hex digits is an image id, not a repository");
  }
  for (absl::string_view component : absl::StrSplit(path, '/')) {
    if (!IsPathComponent(component)) {
      bool upper = std::any_of(component.begin(), component.end(),
                               [](char c) { return absl::ascii_isupper(c); });
      return Invalid(text, upper ? "repository name must be lowercase"
                                 : absl::StrCat("\"", component,
                                                "\" is not a valid repository component"));
    }
  }
  ref.path = std::string(path);
  if (ref.domain == kDockerHubDomain && !absl::StrContains(ref.path, '/')) {
    ref.path = absl::StrCat("library/", ref.path);
  }
  if (ref.tag.empty() && ref.digest.IsEmpty()) {
    ref.tag = std::string(kDefaultTag);
  }
  return ref;
}

std::string Reference::String() const {
  std::string out = Name();
  if (!tag.empty()) {
    absl::StrAppend(&out, ":", tag);
  }
  if (!digest.IsEmpty()) {
    absl::StrAppend(&out, "@", digest.ToString());
  }
  return out;
}

}  // namespace berth::images
