#include "lib/images/registry_auth.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

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

// Percent-encoding for a query or form value: everything but RFC 3986's unreserved characters.
std::string Escape(absl::string_view value) {
  std::string out;
  for (char c : value) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "%", absl::AsciiStrToUpper(absl::StrCat(
                                     absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2))));
    }
  }
  return out;
}

// "name=value&..." with the values escaped.
std::string Encode(const std::vector<std::pair<std::string, std::string>>& params) {
  return absl::StrJoin(params, "&", [](std::string* out, const auto& param) {
    absl::StrAppend(out, param.first, "=", Escape(param.second));
  });
}

std::string Basic(absl::string_view username, absl::string_view secret) {
  return absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(username, ":", secret)));
}

// The OAuth2 POST (docs.docker.com/registry/spec/auth/oauth).
TokenExchange OAuthExchange(const TokenRequest& request) {
  std::vector<std::pair<std::string, std::string>> form;
  if (!request.identity_token.empty()) {
    form = {{"grant_type", "refresh_token"}, {"refresh_token", request.identity_token}};
  } else {
    form = {{"grant_type", "password"},
            {"username", request.username},
            {"password", request.password}};
  }
  form.push_back({"service", request.service});
  if (!request.scope.empty()) {
    form.push_back({"scope", request.scope});
  }
  form.push_back({"client_id", request.client_id});
  if (request.offline) {
    form.push_back({"access_type", "offline"});
  }
  return TokenExchange{"POST", request.realm, Encode(form), ""};
}

// The GET of the token spec: one scope parameter per scope, as docker's clients send them (a
// push that mounts needs two).
TokenExchange GetExchange(const TokenRequest& request) {
  std::vector<std::pair<std::string, std::string>> query = {{"service", request.service}};
  for (absl::string_view one : absl::StrSplit(request.scope, ' ', absl::SkipEmpty())) {
    query.push_back({"scope", std::string(one)});
  }
  TokenExchange exchange;
  exchange.method = "GET";
  if (!request.identity_token.empty()) {
    exchange.authorization = Basic(request.username, request.identity_token);
  } else if (!request.username.empty() || !request.password.empty()) {
    exchange.authorization = Basic(request.username, request.password);
    if (request.offline) {
      query.push_back({"offline_token", "true"});
      query.push_back({"client_id", request.client_id});
    }
  }
  exchange.url = absl::StrCat(request.realm, absl::StrContains(request.realm, '?') ? "&" : "?",
                              Encode(query));
  return exchange;
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
  it = doc.find("refresh_token");
  if (it != doc.end() && it->is_string()) {
    result.refresh_token = it->get<std::string>();
  }
  return result;
}

absl::StatusOr<BearerToken> FetchBearerToken(absl::string_view host, const TokenRequest& request,
                                             const TokenTransport& send,
                                             const std::function<absl::Time()>& now) {
  const bool oauth = !request.identity_token.empty() ||
                     (request.offline && (!request.username.empty() || !request.password.empty()));
  TokenReply reply;
  if (oauth) {
    reply = send(OAuthExchange(request));
    // A token server without OAuth2 refuses the POST; with a password, some answer 400 or 401
    // (ACR, Artifactory, containerd's authorizer.go notes), and asking again by GET is safe.
    const bool no_oauth =
        reply.code == 404 || reply.code == 405 ||
        (request.identity_token.empty() && (reply.code == 400 || reply.code == 401));
    if (reply.transfer_ok && no_oauth) {
      reply = send(GetExchange(request));
    }
  } else {
    reply = send(GetExchange(request));
  }
  const std::string server = absl::StrCat("registry ", host, ": token server ", request.realm);
  if (!reply.transfer_ok) {
    return absl::UnavailableError(absl::StrCat(server, ": ", reply.transfer_error));
  }
  if (reply.code == 401 || reply.code == 403) {
    std::string who = !request.identity_token.empty() ? std::string("the identity token")
                      : !request.username.empty() || !request.password.empty()
                          ? absl::StrCat("user \"", request.username, "\"")
                          : std::string("anonymous access");
    return absl::UnauthenticatedError(
        absl::StrCat(server, " refused ", who, " (HTTP ", reply.code, ")"));
  }
  if (reply.code < 200 || reply.code >= 300) {
    return absl::UnavailableError(absl::StrCat(server, " answered HTTP ", reply.code));
  }
  absl::StatusOr<BearerToken> token = ParseTokenResponse(reply.body, now());
  if (!token.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(server, ": ", token.status().message()));
  }
  return token;
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
