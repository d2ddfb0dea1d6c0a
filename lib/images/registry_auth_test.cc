#include "lib/images/registry_auth.h"

#include <gtest/gtest.h>

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
