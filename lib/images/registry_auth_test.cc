#include "lib/images/registry_auth.h"

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace berth::images {
namespace {

TEST(ParseAuthChallenge, BearerWithQuotedParams) {
  absl::StatusOr<AuthChallenge> c = ParseAuthChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:library/alpine:pull,push")");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheme, "bearer");
  EXPECT_EQ(c->params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c->params["service"], "registry.docker.io");
  EXPECT_EQ(c->params["scope"], "repository:library/alpine:pull,push");
}

TEST(ParseAuthChallenge, BasicAndEscapes) {
  absl::StatusOr<AuthChallenge> c = ParseAuthChallenge(R"(basic Realm="a \"quoted\" realm")");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheme, "basic");
  EXPECT_EQ(c->params["realm"], "a \"quoted\" realm");
}

TEST(ParseAuthChallenge, RefusesMalformed) {
  EXPECT_EQ(ParseAuthChallenge("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAuthChallenge(R"(Bearer realm="unterminated)").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAuthChallenge(R"(Bearer service="x")").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseTokenResponse, TokenOrAccessTokenAndExpiry) {
  absl::Time now = absl::FromUnixSeconds(1000);
  absl::StatusOr<BearerToken> t = ParseTokenResponse(R"({"token":"abc","expires_in":300})", now);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, "abc");
  EXPECT_EQ(t->expires, now + absl::Seconds(300));
  t = ParseTokenResponse(R"({"access_token":"xyz","expires_in":5})", now);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, "xyz");
  EXPECT_EQ(t->expires, now + absl::Seconds(60));  // the spec's minimum
  EXPECT_FALSE(ParseTokenResponse(R"({"expires_in":300})", now).ok());
  EXPECT_FALSE(ParseTokenResponse("not json", now).ok());
}

TEST(ParseTokenResponse, RefreshTokenIsKeptAndIssuedAtDoesNotAgeTheToken) {
  absl::Time now = absl::FromUnixSeconds(1000000);
  // issued_at from a server clock 10 minutes behind ours: the token is still good for its 300 s.
  absl::StatusOr<BearerToken> t = ParseTokenResponse(
      absl::StrCat(R"({"access_token":"a","expires_in":300,"refresh_token":"r","issued_at":")",
                   absl::FormatTime(absl::RFC3339_sec, now - absl::Minutes(10),
                                    absl::UTCTimeZone()),
                   R"("})"),
      now);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->expires, now + absl::Seconds(300));
  EXPECT_EQ(t->refresh_token, "r");
  t = ParseTokenResponse(R"({"token":"a"})", now);  // no expires_in: the spec's 60 s
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->expires, now + absl::Seconds(60));
  EXPECT_EQ(t->refresh_token, "");
}

// A scripted token server: answers `codes` in turn (200 with a token once they run out) and
// records what it was sent.
struct FakeTokenServer {
  explicit FakeTokenServer(std::vector<long> answers = {}) : codes(std::move(answers)) {}
  std::vector<long> codes;
  std::vector<TokenExchange> seen;
  TokenTransport Transport() {
    return [this](const TokenExchange& exchange) {
      seen.push_back(exchange);
      TokenReply reply;
      reply.transfer_ok = true;
      reply.code = seen.size() <= codes.size() ? codes[seen.size() - 1] : 200;
      reply.body = R"({"access_token":"tok","refresh_token":"fresh","expires_in":300})";
      return reply;
    };
  }
};

absl::Time FixedNow() { return absl::FromUnixSeconds(5000); }

TokenRequest Request() {
  TokenRequest request;
  request.realm = "https://auth.example/token";
  request.service = "reg";
  request.scope = "repository:a/b:pull repository:c:pull,push";
  return request;
}

TEST(FetchBearerToken, IdentityTokenIsPostedAsARefreshTokenGrant) {
  FakeTokenServer server;
  TokenRequest request = Request();
  request.username = "u";
  request.identity_token = "id/tok+1";
  absl::StatusOr<BearerToken> token =
      FetchBearerToken("reg:5000", request, server.Transport(), FixedNow);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->token, "tok");
  EXPECT_EQ(token->expires, FixedNow() + absl::Seconds(300));
  ASSERT_EQ(server.seen.size(), 1u);
  EXPECT_EQ(server.seen[0].method, "POST");
  EXPECT_EQ(server.seen[0].url, "https://auth.example/token");
  EXPECT_EQ(server.seen[0].authorization, "");
  EXPECT_EQ(server.seen[0].form,
            "grant_type=refresh_token&refresh_token=id%2Ftok%2B1&service=reg&"
            "scope=repository%3Aa%2Fb%3Apull%20repository%3Ac%3Apull%2Cpush&client_id=berth");
}

TEST(FetchBearerToken, IdentityTokenFallsBackToGetOnlyWhenThePostIsNotServed) {
  for (long code : {404L, 405L}) {
    FakeTokenServer server{{code}};
    TokenRequest request = Request();
    request.identity_token = "idtok";
    ASSERT_TRUE(FetchBearerToken("reg:5000", request, server.Transport(), FixedNow).ok());
    ASSERT_EQ(server.seen.size(), 2u) << code;
    EXPECT_EQ(server.seen[1].method, "GET");
    EXPECT_EQ(server.seen[1].url,
              "https://auth.example/token?service=reg&scope=repository%3Aa%2Fb%3Apull&"
              "scope=repository%3Ac%3Apull%2Cpush");
    EXPECT_EQ(server.seen[1].authorization, "Basic " + absl::Base64Escape(":idtok"));
  }
  // Refused (a wrong or revoked token): no second try, Unauthenticated naming the registry.
  for (long code : {400L, 401L, 403L}) {
    FakeTokenServer server{{code}};
    TokenRequest request = Request();
    request.identity_token = "idtok";
    absl::StatusOr<BearerToken> token =
        FetchBearerToken("reg:5000", request, server.Transport(), FixedNow);
    EXPECT_EQ(server.seen.size(), 1u) << code;
    if (code == 400) {
      EXPECT_EQ(token.status().code(), absl::StatusCode::kUnavailable) << token.status();
    } else {
      EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated) << token.status();
      EXPECT_TRUE(absl::StrContains(token.status().message(), "registry reg:5000"));
      EXPECT_TRUE(absl::StrContains(token.status().message(), "identity token"));
    }
  }
}

TEST(FetchBearerToken, OfflinePasswordIsAPasswordGrantThenAGetWithOfflineToken) {
  FakeTokenServer server;
  TokenRequest request = Request();
  request.scope = "";
  request.username = "u";
  request.password = "p&q";
  request.offline = true;
  absl::StatusOr<BearerToken> token =
      FetchBearerToken("reg:5000", request, server.Transport(), FixedNow);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->refresh_token, "fresh");
  ASSERT_EQ(server.seen.size(), 1u);
  EXPECT_EQ(server.seen[0].form,
            "grant_type=password&username=u&password=p%26q&service=reg&client_id=berth&"
            "access_type=offline");
  // A token server without OAuth2 (or one that answers the POST 401, as some do): a GET.
  for (long code : {401L, 404L}) {
    FakeTokenServer plain{{code}};
    ASSERT_TRUE(FetchBearerToken("reg:5000", request, plain.Transport(), FixedNow).ok());
    ASSERT_EQ(plain.seen.size(), 2u);
    EXPECT_EQ(plain.seen[1].method, "GET");
    EXPECT_EQ(plain.seen[1].url,
              "https://auth.example/token?service=reg&offline_token=true&client_id=berth");
    EXPECT_EQ(plain.seen[1].authorization, "Basic " + absl::Base64Escape("u:p&q"));
  }
}

TEST(FetchBearerToken, PasswordAndAnonymousUseTheGetOfTheTokenSpec) {
  FakeTokenServer server{{401}};
  TokenRequest request = Request();
  request.realm = "https://auth.example/token?x=1";
  request.username = "u";
  request.password = "p";
  absl::StatusOr<BearerToken> token =
      FetchBearerToken("reg:5000", request, server.Transport(), FixedNow);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(token.status().message(), "user \"u\"")) << token.status();
  ASSERT_EQ(server.seen.size(), 1u);
  EXPECT_EQ(server.seen[0].method, "GET");
  EXPECT_TRUE(absl::StartsWith(server.seen[0].url, "https://auth.example/token?x=1&service=reg"));
  EXPECT_EQ(server.seen[0].authorization, "Basic " + absl::Base64Escape("u:p"));

  FakeTokenServer anonymous;
  ASSERT_TRUE(FetchBearerToken("reg:5000", Request(), anonymous.Transport(), FixedNow).ok());
  ASSERT_EQ(anonymous.seen.size(), 1u);
  EXPECT_EQ(anonymous.seen[0].method, "GET");
  EXPECT_EQ(anonymous.seen[0].authorization, "");
}

TEST(FetchBearerToken, UnreachableIsUnavailable) {
  TokenTransport down = [](const TokenExchange&) {
    TokenReply reply;
    reply.transfer_error = "Connection refused";
    return reply;
  };
  absl::StatusOr<BearerToken> token = FetchBearerToken("reg:5000", Request(), down, FixedNow);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(token.status().message(), "Connection refused"));
}

TEST(TokenCache, PerScopeUntilExpiry) {
  TokenCache cache(absl::Seconds(5));
  absl::Time now = absl::FromUnixSeconds(1000);
  cache.Store("r:5000", "repository:a:pull", {"tok-a", now + absl::Seconds(60)});
  EXPECT_EQ(cache.Lookup("r:5000", "repository:a:pull", now), "tok-a");
  EXPECT_EQ(cache.Lookup("r:5000", "repository:b:pull", now), "");
  EXPECT_EQ(cache.Lookup("other:5000", "repository:a:pull", now), "");
  EXPECT_EQ(cache.Lookup("r:5000", "repository:a:pull", now + absl::Seconds(56)), "");
  cache.Forget("r:5000", "repository:a:pull");
  EXPECT_EQ(cache.Lookup("r:5000", "repository:a:pull", now), "");
}

}  // namespace
}  // namespace berth::images
