#include "lib/images/registry_auth.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace berth::images {
namespace {

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

void SkipSpaces(absl::string_view text, size_t* pos) {
  while (*pos < text.size() && (text[*pos] == ' ' || text[*pos] == '\t')) {
    ++*pos;
  }
}

std::string ReadToken(absl::string_view text, size_t* pos) {
  size_t start = *pos;
  while (*pos < text.size() && IsTokenChar(text[*pos])) {
    ++*pos;
  }
  return std::string(text.substr(start, *pos - start));
}

}  // namespace

absl::StatusOr<AuthChallenge> ParseAuthChallenge(absl::string_view header) {
  AuthChallenge challenge;
  size_t pos = 0;
  SkipSpaces(header, &pos);
  challenge.scheme = absl::AsciiStrToLower(ReadToken(header, &pos));
  if (challenge.scheme.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("WWW-Authenticate \"", header, "\": no auth scheme"));
  }
  // auth-param *( "," auth-param ), auth-param = token "=" ( token / quoted-string ).
  while (pos < header.size()) {
    SkipSpaces(header, &pos);
    if (pos < header.size() && header[pos] == ',') {
      ++pos;
      continue;
    }
    std::string name = absl::AsciiStrToLower(ReadToken(header, &pos));
    SkipSpaces(header, &pos);
    if (name.empty() || pos >= header.size() || header[pos] != '=') {
      break;  // the next challenge (or garbage): only the first one is read
    }
    ++pos;
    SkipSpaces(header, &pos);
    std::string value;
    if (pos < header.size() && header[pos] == '"') {
      ++pos;
      bool closed = false;
      while (pos < header.size()) {
        char c = header[pos++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && pos < header.size()) {
          c = header[pos++];
        }
        value.push_back(c);
      }
      if (!closed) {
        return absl::InvalidArgumentError(
            absl::StrCat("WWW-Authenticate \"", header, "\": unterminated quoted string"));
      }
    } else {
      value = ReadToken(header, &pos);
    }
    challenge.params[name] = value;
  }
  if (challenge.scheme == "bearer" && challenge.params["realm"].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("WWW-Authenticate \"", header, "\": Bearer challenge without a realm"));
  }
  return challenge;
}

absl::StatusOr<BearerToken> ParseTokenResponse(absl::string_view body, absl::Time now) {
  nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr,
                                             /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    return absl::InvalidArgumentError("token server answer is not a JSON object");
  }
  BearerToken result;
  for (const char* field : {"token", "access_token"}) {
    auto it = doc.find(field);
    if (it != doc.end() && it->is_string() && !it->get<std::string>().empty()) {
      result.token = it->get<std::string>();
      break;
    }
  }
  if (result.token.empty()) {
    return absl::InvalidArgumentError("token server answer has no \"token\"");
  }
  int64_t expires_in = 60;
  auto it = doc.find("expires_in");
  if (it != doc.end() && it->is_number_integer() && it->get<int64_t>() > 60) {
    expires_in = it->get<int64_t>();
  }
  result.expires = now + absl::Seconds(expires_in);
  return result;
}

std::string TokenCache::Key(absl::string_view host, absl::string_view scope) {
  return absl::StrCat(host, " ", scope);
}

std::string TokenCache::Lookup(absl::string_view host, absl::string_view scope,
                               absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(Key(host, scope));
  if (it == tokens_.end() || now + margin_ >= it->second.expires) {
    return std::string();
  }
  return it->second.token;
}

void TokenCache::Store(absl::string_view host, absl::string_view scope, BearerToken token) {
  absl::MutexLock lock(&mu_);
  tokens_[Key(host, scope)] = std::move(token);
}

void TokenCache::Forget(absl::string_view host, absl::string_view scope) {
  absl::MutexLock lock(&mu_);
  tokens_.erase(Key(host, scope));
}

}  // namespace berth::images
