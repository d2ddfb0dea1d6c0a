#include "integration/token_server.h"

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "integration/registry_test_util.h"
#include "lib/testing/testing.h"

namespace berth::integration {
TestTokenServer::TestTokenServer(const std::string& dir)
    : key_(dir + "/token.key"),
      cert_(dir + "/token.pem"),
      server_([this](const HttpTestRequest& req) { return Issue(req); }) {}

absl::Status TestTokenServer::MakeKey() {
  int code = 0;
  std::string out = testing::RunCommand(
      std::vector<std::string>{"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                               "-keyout", key_, "-out", cert_, "-days", "2", "-subj",
                               "/CN=berth-test-token"},
      &code);
  if (code != 0) {
    return absl::InternalError("openssl req: " + out);
  }
  return absl::OkStatus();
}

Registry::Options TestTokenServer::RegistryOptions() const {
  Registry::Options options;
  options.token_realm = realm();
  options.token_service = kService;
  options.token_issuer = kIssuer;
  options.token_rootcertbundle = cert_;
  return options;
}

std::string TestTokenServer::refresh_token() const {
  return absl::StrCat("berth-refresh-", server_.port());
}

void TestTokenServer::set_expires_in(int seconds) {
  absl::MutexLock lock(&mu_);
  expires_in_ = seconds;
}

void TestTokenServer::set_oauth(bool oauth) {
  absl::MutexLock lock(&mu_);
  oauth_ = oauth;
}

void TestTokenServer::set_anonymous(bool anonymous) {
  absl::MutexLock lock(&mu_);
  anonymous_ = anonymous;
}

std::string TestTokenServer::Grant(const std::vector<std::string>& scopes, bool user,
                                   bool oauth, bool with_refresh) {
  std::vector<std::pair<std::string, std::vector<std::string>>> access;
  for (const std::string& scope : scopes) {
    size_t colon = scope.rfind(':');
    std::vector<std::string> actions = {"pull"};
    if (user) {
      actions = absl::StrSplit(scope.substr(colon + 1), ',');
    }
    access.push_back({scope.substr(0, colon), actions});
  }
  absl::StatusOr<std::string> token = SignRegistryToken(key_, cert_, kIssuer, kService, access);
  if (!token.ok()) {
    return HttpText(500, {}, std::string(token.status().message()));
  }
  // The token spec's answer has "token"; OAuth2's has "access_token".
  nlohmann::json answer = {{oauth ? "access_token" : "token", *token},
                           {"issued_at", absl::FormatTime(absl::RFC3339_sec, absl::Now(),
                                                          absl::UTCTimeZone())}};
  {
    absl::MutexLock lock(&mu_);
    answer["expires_in"] = expires_in_;
  }
  if (with_refresh) {
    answer["refresh_token"] = refresh_token();
  }
  return HttpText(200, {"Content-Type: application/json"}, answer.dump());
}

std::string TestTokenServer::Issue(const HttpTestRequest& req) {
  if (req.method == "POST") {
    {
      absl::MutexLock lock(&mu_);
      if (!oauth_) {
        return HttpText(404, {}, "404 page not found");
      }
    }
    std::vector<std::string> scopes =
        absl::StrSplit(req.FormValue("scope"), ' ', absl::SkipEmpty());
    const std::string grant = req.FormValue("grant_type");
    if (grant == "password" && req.FormValue("username") == kUser &&
        req.FormValue("password") == kPassword) {
      return Grant(scopes, true, true, req.FormValue("access_type") == "offline");
    }
    if (grant == "refresh_token" && req.FormValue("refresh_token") == refresh_token()) {
      return Grant(scopes, true, true, false);
    }
    return HttpText(401, {"Content-Type: application/json"}, R"({"error":"invalid_grant"})");
  }
  bool user = false;
  auto auth = req.headers.find("authorization");
  if (auth != req.headers.end()) {
    if (auth->second != "Basic " + absl::Base64Escape(absl::StrCat(kUser, ":", kPassword))) {
      return HttpText(401, {}, R"({"details":"wrong credentials"})");
    }
    user = true;
  } else {
    absl::MutexLock lock(&mu_);
    if (!anonymous_) {
      return HttpText(401, {}, R"({"details":"anonymous access is off"})");
    }
  }
  return Grant(req.QueryValues("scope"), user, false, false);
}

}  // namespace berth::integration
