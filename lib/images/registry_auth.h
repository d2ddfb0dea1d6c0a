#pragma once

// The registry authentication pieces that need no network: reading a WWW-Authenticate
// challenge, reading a token server's answer, and the per-scope token cache. The HTTP side is
// lib/images/registry_client.cc.
//
// Protocol (distribution's token spec, docs.docker.com/registry/spec/auth/token): a request
// answered 401 carries `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` (or
// `Basic realm="..."`). For Bearer, the client GETs `realm?service=S&scope=SC` (with basic
// credentials when it has them) and receives {"token": T, "expires_in": N, "issued_at": ...};
// it then repeats the request with `Authorization: Bearer T`.

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
// (60 when absent or below 60, as the spec says); the expiry is counted from `now` (the client's
// clock, not "issued_at", so a skewed server clock cannot make a token look fresh).
struct BearerToken {
  std::string token;
  absl::Time expires;
};
absl::StatusOr<BearerToken> ParseTokenResponse(absl::string_view body, absl::Time now);

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
