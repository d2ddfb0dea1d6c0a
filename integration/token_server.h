#pragma once

// A token server for docker-registry's `auth: token:` (distribution's token spec, and its OAuth2
// form), written for the tests. It signs JWTs with a key of its own that the registry trusts
// through RegistryOptions(), and grants:
//   GET  realm?service=&scope=     anonymous: pull (401 after set_anonymous(false)); Basic
//                                  kUser:kPassword: every action asked; other credentials: 401.
//   POST realm (a form), unless set_oauth(false) (then 404, as a server without OAuth):
//     grant_type=password          kUser/kPassword: every action asked, and with
//                                  access_type=offline a refresh_token (refresh_token()); else 401.
//     grant_type=refresh_token     a refresh token it issued: every action asked; else 401
//                                  {"error": "invalid_grant"}.
// Every answer carries expires_in (set_expires_in, default 300) and issued_at (now).

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "integration/harness.h"
#include "integration/http_test_server.h"

namespace berth::integration {

class TestTokenServer {
 public:
  static constexpr char kService[] = "berth-test-registry";
  static constexpr char kIssuer[] = "berth-test-issuer";

  // Key and certificate are written under `dir`.
  explicit TestTokenServer(const std::string& dir);
  // Makes the signing key and certificate (openssl); call before the registry starts.
  absl::Status MakeKey();
  // The token options for a Registry that trusts this server.
  Registry::Options RegistryOptions() const;

  std::vector<HttpTestRequest> requests() const { return server_.requests(); }
  std::string realm() const { return server_.url() + "/token"; }
  std::string refresh_token() const;
  void set_expires_in(int seconds);
  void set_oauth(bool oauth);
  void set_anonymous(bool anonymous);

 private:
  std::string Issue(const HttpTestRequest& req);
  // A token for `scopes`: pull only, or (`user`) every action asked; as OAuth2's answer
  // ("access_token") or the token spec's ("token").
  std::string Grant(const std::vector<std::string>& scopes, bool user, bool oauth,
                    bool with_refresh);

  const std::string key_;
  const std::string cert_;
  mutable absl::Mutex mu_;
  int expires_in_ ABSL_GUARDED_BY(mu_) = 300;
  bool oauth_ ABSL_GUARDED_BY(mu_) = true;
  bool anonymous_ ABSL_GUARDED_BY(mu_) = true;
  HttpTestServer server_;
};

}  // namespace berth::integration
