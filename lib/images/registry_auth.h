#pragma once

// Registry authentication: reading a WWW-Authenticate challenge, asking the token server for a
// bearer token (FetchBearerToken; the HTTP exchange itself is the caller's, see TokenTransport),
// reading its answer, and the per-scope token cache. The HTTP side is
// lib/images/registry_http.cc.
//
// Protocol (distribution's token spec, docs.docker.com/registry/spec/auth/token): a request
// answered 401 carries `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` (or
// `Basic realm="..."`). For Bearer, the client GETs `realm?service=S&scope=SC` (with basic
// credentials when it has them) and receives {"token": T, "expires_in": N, "issued_at": ...};
// it then repeats the request with `Authorization: Bearer T`. With an identity token (an
// OAuth2 refresh token, docs.docker.com/registry/spec/auth/oauth) the token is asked for by
// POSTing a form to the realm instead: grant_type=refresh_token, refresh_token, service,
// scope, client_id; `berth login` POSTs grant_type=password with access_type=offline to be
// given a refresh_token to store in place of the password, as containerd and docker do.

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace berth::images {

// One parsed challenge. `scheme` is lowercased ("bearer", "basic"); parameter names are
// lowercased, values unquoted (backslash escapes undone).
struct AuthChallenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

// Parses the first challenge of a WWW-Authenticate value. InvalidArgument when there is no
// scheme, an unterminated quoted string, or a Bearer challenge without a realm.
absl::StatusOr<AuthChallenge> ParseAuthChallenge(absl::string_view header);

// A token server's answer: "token" or, failing that, "access_token"; "expires_in" in seconds
// (60 when absent or below 60, as the spec says); "refresh_token" when it gave one. The expiry
// is counted from `now`, when the answer arrived, not from "issued_at": a server clock behind
// ours by more than the lifetime would otherwise make every token stale on arrival (each
// request then fails), while a token the registry finds expired early is only refused once
// (RegistryHttp forgets it and fetches another).
struct BearerToken {
  std::string token;
  absl::Time expires;
  std::string refresh_token = {};
};
absl::StatusOr<BearerToken> ParseTokenResponse(absl::string_view body, absl::Time now);

// What a bearer token is asked for with: the challenge's realm and service, the scopes the
// request needs (space-separated), and the credentials, if any.
struct TokenRequest {
  std::string realm;
  std::string service;
  std::string scope;
  std::string username;
  std::string password;
  std::string identity_token;  // wins over the password
  // Ask for a refresh token as well (berth login with a password): POST grant_type=password
  // with access_type=offline; a server that does not take the POST (400, 401, 404, 405) is
  // asked by GET with offline_token=true.
  bool offline = false;
  std::string client_id = "berth";
};

// One HTTP exchange with the token server, which the HTTP layer performs: `method` "GET" or
// "POST"; for a POST `form` is the application/x-www-form-urlencoded body; `authorization` the
// Authorization header's value (empty: none).
struct TokenExchange {
  std::string method;
  std::string url;
  std::string form;
  std::string authorization;
};
struct TokenReply {
  bool transfer_ok = false;
  std::string transfer_error;  // why not
  long code = 0;
  std::string body;
};
using TokenTransport = std::function<TokenReply(const TokenExchange&)>;

// Asks `request.realm` for a token through `send`, for registry `host` (named in errors):
//   identity token: POST grant_type=refresh_token (GET with Basic ":<token>" only when the
//                   server answers the POST 404 or 405: a token server without OAuth);
//   offline:        POST grant_type=password (above);
//   otherwise:      GET with Basic username:password, or anonymous.
// Unauthenticated naming the registry and what was refused when the server answers 401 or 403
// or an unusable body; Unavailable when it cannot be reached or answers anything else.
// `now` is the clock the expiry is counted on.
absl::StatusOr<BearerToken> FetchBearerToken(absl::string_view host, const TokenRequest& request,
                                             const TokenTransport& send,
                                             const std::function<absl::Time()>& now);

// Tokens by (host, scope). Lookup returns a token only until `margin` before its expiry, so a
// request is never sent with one about to lapse. Thread-safe.
class TokenCache {
 public:
  explicit TokenCache(absl::Duration margin = absl::Seconds(5)) : margin_(margin) {}
  // The cached token, or empty.
  std::string Lookup(absl::string_view host, absl::string_view scope, absl::Time now) const;
  void Store(absl::string_view host, absl::string_view scope, BearerToken token);
  // Drops a token the registry refused.
  void Forget(absl::string_view host, absl::string_view scope);

 private:
  static std::string Key(absl::string_view host, absl::string_view scope);
  const absl::Duration margin_;
  mutable absl::Mutex mu_;
  std::map<std::string, BearerToken> tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::images
