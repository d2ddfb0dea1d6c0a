// Token auth (WWW-Authenticate: Bearer) end to end: a real docker-registry configured with
// `auth: token:` trusts JWTs signed by a key made here; the token server is an HttpTestServer
// that grants pull to anonymous callers and pull+push to kUser:kPassword, and refuses wrong
// credentials. Pushes: a mount asks for both repositories in one token request, an anonymous push
// is refused naming the registry, and CheckLogin (berth login) tells right credentials from
// wrong ones.

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "integration/http_test_server.h"
#include "integration/registry_test_util.h"

namespace berth::integration {
namespace {

constexpr char kService[] = "berth-test-registry";
constexpr char kIssuer[] = "berth-test-issuer";

class TokenRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = MakeImage(dir_);
    int code = 0;
    std::string out = testing::RunCommand(
        std::vector<std::string>{"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                 "-keyout", key_, "-out", cert_, "-days", "2", "-subj",
                                 "/CN=berth-test-token"},
        &code);
    ASSERT_EQ(code, 0) << out;
    Registry::Options options;
    options.token_realm = token_server_.url() + "/token";
    options.token_service = kService;
    options.token_issuer = kIssuer;
    options.token_rootcertbundle = cert_;
    registry_ = std::make_unique<Registry>(dir_.path(), options);
    ASSERT_TRUE(registry_->Start().ok()) << registry_->ReadLog();
    absl::Status status =
        registry_->Push(image_.layout, kTag, kRepo, absl::StrCat(kUser, ":", kPassword));
    ASSERT_TRUE(status.ok()) << status << "\n" << registry_->ReadLog();
  }

  std::string Issue(const HttpTestRequest& req) {
    bool user = false;
    auto auth = req.headers.find("authorization");
    if (auth != req.headers.end()) {
      if (auth->second !=
          "Basic " + absl::Base64Escape(absl::StrCat(kUser, ":", kPassword))) {
        return HttpText(401, {}, R"({"details":"wrong credentials"})");
      }
      user = true;
    }
    std::vector<std::pair<std::string, std::vector<std::string>>> access;
    for (const std::string& scope : req.QueryValues("scope")) {
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
    return HttpText(200, {"Content-Type: application/json"},
                    nlohmann::json({{"token", *token}, {"expires_in", 300}}).dump());
  }

  testing::TempDir dir_;
  std::string key_ = dir_.Join("token.key");
  std::string cert_ = dir_.Join("token.pem");
  HttpTestServer token_server_{[this](const HttpTestRequest& req) { return Issue(req); }};
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
  EXPECT_EQ(asked.back().QueryValues("service"), std::vector<std::string>{kService});
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

}  // namespace
}  // namespace berth::integration
