// Token auth (WWW-Authenticate: Bearer) end to end: a real docker-registry configured with
// `auth: token:` trusts JWTs signed by a key made here; the token server is an HttpTestServer
// that grants pull to anonymous callers and pull+push to kUser:kPassword, and refuses wrong
// credentials. Pushes: a mount asks for both repositories in one token request, an anonymous push
// is refused naming the registry, and CheckLogin (berth login) tells right credentials from
// wrong ones. Identity tokens (OAuth2 refresh tokens) get bearer tokens by POST; login with a
// password is given one; a token is fetched again once it expired (on a clock the test moves).

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "integration/http_test_server.h"
#include "integration/registry_test_util.h"
#include "integration/token_server.h"

namespace berth::integration {
namespace {

class TokenRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = MakeImage(dir_);
    absl::Status key = token_server_.MakeKey();
    ASSERT_TRUE(key.ok()) << key;
    registry_ = std::make_unique<Registry>(dir_.path(), token_server_.RegistryOptions());
    ASSERT_TRUE(registry_->Start().ok()) << registry_->ReadLog();
    absl::Status status =
        registry_->Push(image_.layout, kTag, kRepo, absl::StrCat(kUser, ":", kPassword));
    ASSERT_TRUE(status.ok()) << status << "\n" << registry_->ReadLog();
  }

  testing::TempDir dir_;
  TestTokenServer token_server_{dir_.path()};
  TestImage image_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(TokenRegistryTest, AnonymousTokenPullsAndIsCachedPerScope) {
  std::unique_ptr<RegistryClient> client = Client(registry_->host(), PlainHttp());
  size_t before = token_server_.requests().size();
  ExpectPullable(*client, registry_->host(), image_);
  std::vector<HttpTestRequest> asked = token_server_.requests();
  // One token for the repository's pull scope served every request of the pull.
  ASSERT_EQ(asked.size(), before + 1);
  EXPECT_EQ(asked.back().QueryValues("service"),
            std::vector<std::string>{TestTokenServer::kService});
  EXPECT_EQ(asked.back().QueryValues("scope"),
            std::vector<std::string>{absl::StrCat("repository:", kRepo, ":pull")});
  EXPECT_EQ(asked.back().headers.count("authorization"), 0u);
}

TEST_F(TokenRegistryTest, CredentialsAreSentToTheTokenServer) {
  RegistryHostConfig config = PlainHttp();
  config.username = kUser;
  config.password = kPassword;
  ExpectPullable(*Client(registry_->host(), config), registry_->host(), image_);
  EXPECT_EQ(token_server_.requests().back().headers.count("authorization"), 1u);
}

TEST_F(TokenRegistryTest, WrongCredentialsAreUnauthenticatedNamingTheRegistry) {
  RegistryHostConfig config = PlainHttp();
  config.username = kUser;
  config.password = "wrong";
  absl::StatusOr<Descriptor> desc =
      Client(registry_->host(), config)->Resolve(Ctx(), Ref(registry_->host(), ":v1"));
  ASSERT_EQ(desc.status().code(), absl::StatusCode::kUnauthenticated) << desc.status();
  EXPECT_TRUE(absl::StrContains(desc.status().message(), registry_->host())) << desc.status();
}

// A client with kUser and `password`.
std::unique_ptr<RegistryClient> UserClient(const std::string& host, const std::string& password) {
  RegistryHostConfig config = PlainHttp();
  config.username = kUser;
  config.password = password;
  return Client(host, config);
}

TEST_F(TokenRegistryTest, MountAsksForBothRepositoriesInOneToken) {
  std::unique_ptr<RegistryClient> client = UserClient(registry_->host(), kPassword);
  absl::StatusOr<Reference> other =
      Reference::Parse(absl::StrCat(registry_->host(), "/test/other:v1"));
  ASSERT_TRUE(other.ok());
  oci::Descriptor layer = LargestLayer(image_);
  int64_t sent = 0;
  images::BlobUpload upload = FromLayout(image_, layer, &sent);
  upload.mount_from = kRepo;
  absl::StatusOr<images::BlobPushResult> pushed = client->PushBlob(Ctx(), *other, layer, upload);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(*pushed, images::BlobPushResult::kMounted);
  EXPECT_EQ(sent, 0);  // nothing uploaded
  bool asked = false;
  std::string seen;
  for (const HttpTestRequest& req : token_server_.requests()) {
    // In any order, scopes and actions alike: the registry's challenge lists them as it likes.
    std::vector<std::string> scopes;
    std::vector<std::string> values;
    for (const std::string& value : req.QueryValues("scope")) {
      for (absl::string_view scope : absl::StrSplit(value, ' ', absl::SkipEmpty())) {
        values.emplace_back(scope);
      }
    }
    for (const std::string& scope : values) {
      std::vector<std::string> parts = absl::StrSplit(scope, ':');
      if (parts.size() == 3) {
        std::vector<std::string> actions = absl::StrSplit(parts[2], ',');
        std::sort(actions.begin(), actions.end());
        parts[2] = absl::StrJoin(actions, ",");
      }
      scopes.push_back(absl::StrJoin(parts, ":"));
    }
    std::sort(scopes.begin(), scopes.end());
    absl::StrAppend(&seen, " [", absl::StrJoin(scopes, " "), "]");
    asked = asked || scopes == std::vector<std::string>{"repository:test/hello:pull",
                                                        "repository:test/other:pull,push"};
  }
  EXPECT_TRUE(asked) << "no token request named both repositories; asked for" << seen;
  EXPECT_TRUE(*client->HasBlob(Ctx(), *other, layer));
}

TEST_F(TokenRegistryTest, AnonymousPushIsRefusedNamingTheRegistryAndWritesNothing) {
  std::unique_ptr<RegistryClient> client = Client(registry_->host(), PlainHttp());
  absl::StatusOr<Reference> other =
      Reference::Parse(absl::StrCat(registry_->host(), "/test/denied:v1"));
  oci::Descriptor layer = LargestLayer(image_);
  int64_t sent = 0;
  absl::StatusOr<images::BlobPushResult> pushed =
      client->PushBlob(Ctx(), *other, layer, FromLayout(image_, layer, &sent));
  ASSERT_EQ(pushed.status().code(), absl::StatusCode::kUnauthenticated) << pushed.status();
  EXPECT_TRUE(absl::StrContains(pushed.status().message(), registry_->host()));
  EXPECT_EQ(sent, 0);
  struct stat st {};
  EXPECT_NE(::stat((dir_.path() + "/registry/docker/registry/v2/repositories/test/denied").c_str(),
                   &st),
            0);
}

TEST_F(TokenRegistryTest, CheckLoginTellsRightCredentialsFromWrongOnes) {
  EXPECT_TRUE(UserClient(registry_->host(), kPassword)->CheckLogin(Ctx(), registry_->host()).ok());
  absl::Status wrong =
      UserClient(registry_->host(), "wrong")->CheckLogin(Ctx(), registry_->host());
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated) << wrong;
  EXPECT_TRUE(absl::StrContains(wrong.message(), registry_->host())) << wrong;
}

// The token server's requests from index `from` on.
std::vector<HttpTestRequest> Since(const TestTokenServer& server, size_t from) {
  std::vector<HttpTestRequest> all = server.requests();
  return std::vector<HttpTestRequest>(all.begin() + static_cast<long>(std::min(from, all.size())),
                                      all.end());
}

TEST_F(TokenRegistryTest, IdentityTokenGetsTokensByTheOAuthPost) {
  token_server_.set_anonymous(false);  // the identity token is the only way in
  RegistryHostConfig config = PlainHttp();
  config.identity_token = token_server_.refresh_token();
  const size_t before = token_server_.requests().size();
  ExpectPullable(*Client(registry_->host(), config), registry_->host(), image_);
  std::vector<HttpTestRequest> asked = Since(token_server_, before);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].method, "POST");
  EXPECT_EQ(asked[0].FormValue("grant_type"), "refresh_token");
  EXPECT_EQ(asked[0].FormValue("refresh_token"), token_server_.refresh_token());
  EXPECT_EQ(asked[0].FormValue("service"), TestTokenServer::kService);
  EXPECT_EQ(asked[0].FormValue("scope"), absl::StrCat("repository:", kRepo, ":pull"));
  EXPECT_EQ(asked[0].FormValue("client_id"), "berth");
  EXPECT_EQ(asked[0].headers.count("authorization"), 0u);

  // It pushes as the user it stands for.
  absl::StatusOr<Reference> other =
      Reference::Parse(absl::StrCat(registry_->host(), "/test/by-token:v1"));
  ASSERT_TRUE(other.ok());
  oci::Descriptor layer = LargestLayer(image_);
  int64_t sent = 0;
  absl::StatusOr<images::BlobPushResult> pushed = Client(registry_->host(), config)->PushBlob(
      Ctx(), *other, layer, FromLayout(image_, layer, &sent));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
}

TEST_F(TokenRegistryTest, WrongIdentityTokenIsUnauthenticatedNamingTheRegistry) {
  token_server_.set_anonymous(false);
  RegistryHostConfig config = PlainHttp();
  config.identity_token = "not-" + token_server_.refresh_token();
  const size_t before = token_server_.requests().size();
  absl::StatusOr<Descriptor> desc =
      Client(registry_->host(), config)->Resolve(Ctx(), Ref(registry_->host(), ":v1"));
  ASSERT_EQ(desc.status().code(), absl::StatusCode::kUnauthenticated) << desc.status();
  EXPECT_TRUE(absl::StrContains(desc.status().message(), "registry " + registry_->host()))
      << desc.status();
  EXPECT_TRUE(absl::StrContains(desc.status().message(), "identity token")) << desc.status();
  // Refused is refused: no second try by GET.
  std::vector<HttpTestRequest> asked = Since(token_server_, before);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].method, "POST");
}

TEST_F(TokenRegistryTest, LoginWithAPasswordIsGivenAnIdentityToken) {
  std::string given;
  std::string given_for;
  RegistryClientOptions options;
  options.hosts[registry_->host()] = PlainHttp();
  options.hosts[registry_->host()].username = kUser;
  options.hosts[registry_->host()].password = kPassword;
  options.on_refresh_token = [&](absl::string_view host, const std::string& token) {
    given_for = std::string(host);
    given = token;
  };
  const size_t before = token_server_.requests().size();
  absl::Status login =
      RegistryClient::Create(options)->CheckLogin(Ctx(), registry_->host());
  ASSERT_TRUE(login.ok()) << login;
  EXPECT_EQ(given, token_server_.refresh_token());
  EXPECT_EQ(given_for, registry_->host());
  std::vector<HttpTestRequest> asked = Since(token_server_, before);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].method, "POST");
  EXPECT_EQ(asked[0].FormValue("grant_type"), "password");
  EXPECT_EQ(asked[0].FormValue("username"), kUser);
  EXPECT_EQ(asked[0].FormValue("access_type"), "offline");

  // A token server without OAuth2: the login goes by GET and there is no identity token.
  token_server_.set_oauth(false);
  given.clear();
  login = RegistryClient::Create(options)->CheckLogin(Ctx(), registry_->host());
  ASSERT_TRUE(login.ok()) << login;
  EXPECT_EQ(given, "");
  EXPECT_EQ(token_server_.requests().back().method, "GET");
  EXPECT_EQ(token_server_.requests().back().QueryValues("offline_token"),
            std::vector<std::string>{"true"});
}

TEST_F(TokenRegistryTest, ATokenIsCachedUntilItExpiresThenFetchedAgain) {
  token_server_.set_expires_in(60);
  // The client's clock, moved by the test: no waiting for a real minute.
  std::atomic<int64_t> skew_seconds{0};
  RegistryClientOptions options;
  options.hosts[registry_->host()] = PlainHttp();
  options.clock = [&] { return absl::Now() + absl::Seconds(skew_seconds.load()); };
  std::unique_ptr<RegistryClient> client = RegistryClient::Create(options);
  const size_t before = token_server_.requests().size();
  ASSERT_TRUE(client->Resolve(Ctx(), Ref(registry_->host(), ":v1")).ok());
  ASSERT_EQ(Since(token_server_, before).size(), 1u);
  skew_seconds = 30;  // well within its 60 s: the cached token serves
  ASSERT_TRUE(client->Resolve(Ctx(), Ref(registry_->host(), ":v1")).ok());
  EXPECT_EQ(Since(token_server_, before).size(), 1u);
  skew_seconds = 61;  // expired: a new one is asked for, for the same scope
  ASSERT_TRUE(client->Resolve(Ctx(), Ref(registry_->host(), ":v1")).ok());
  std::vector<HttpTestRequest> asked = Since(token_server_, before);
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[1].QueryValues("scope"), asked[0].QueryValues("scope"));
  // And that one is cached in turn.
  ASSERT_TRUE(client->Resolve(Ctx(), Ref(registry_->host(), ":v1")).ok());
  EXPECT_EQ(Since(token_server_, before).size(), 2u);
}

}  // namespace
}  // namespace berth::integration
