// docker-style credential files: parsing both entry forms, host spellings, bad entries refused,
// and the stored file 0600, replaced atomically, other keys kept.

#include "lib/images/registry_credentials.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth::images {
namespace {

TEST(RegistryCredentialsTest, ParsesAuthAndUsernamePasswordByHost) {
  // "dXNlcjpwYTpzcw==" is base64 of "user:pa:ss" (a password may hold ':').
  absl::StatusOr<std::map<std::string, RegistryCredentials>> creds = ParseCredentials(R"({
    "auths": {
      "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
      "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
      "https://ghcr.io/v2/": {"auth": "YTpi"},
      "token.only": {"identitytoken": "x"}
    },
    "credsStore": "desktop"
  })");
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_EQ(creds->size(), 3u);
  EXPECT_EQ((*creds)["127.0.0.1:5000"].username, "user");
  EXPECT_EQ((*creds)["127.0.0.1:5000"].password, "pa:ss");
  EXPECT_EQ((*creds)["docker.io"].username, "hub");
  EXPECT_EQ((*creds)["docker.io"].password, "pw");
  EXPECT_EQ((*creds)["ghcr.io"].username, "a");
  EXPECT_EQ(creds->count("token.only"), 0u);
}

TEST(RegistryCredentialsTest, MalformedDocumentsAreRefusedNamingTheEntry) {
  EXPECT_EQ(ParseCredentials("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCredentials(R"({"auths": 3})").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status bad = ParseCredentials(R"({"auths": {"h:1": {"auth": "!!!"}}})").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("h:1"), absl::string_view::npos) << bad;
  // base64 without a ':' inside.
  EXPECT_FALSE(ParseCredentials(R"({"auths": {"h": {"auth": "YWJj"}}})").ok());
}

TEST(RegistryCredentialsTest, StoreIsPrivateKeepsOtherKeysAndRemoveFindsEverySpelling) {
  testing::TempDir dir;
  const std::string path = dir.Join("cfg/auth.json");
  EXPECT_TRUE(ReadCredentialsFile(path)->empty());  // missing: none
  ASSERT_TRUE(MakeDirs(dir.Join("cfg"), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(path,
                              R"({"auths": {"https://r.example:5000/v1/": {"auth": "YTpi"}},
                                  "credHelpers": {"x": "y"}})",
                              0644)
                  .ok());
  ASSERT_TRUE(StoreCredentials(path, "r.example:5000", {"u", "p"}).ok());
  ASSERT_TRUE(StoreCredentials(path, "other:1", {"o", "q"}).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  nlohmann::json doc = nlohmann::json::parse(*ReadFile(path));
  EXPECT_EQ(doc["credHelpers"]["x"], "y");
  EXPECT_EQ(doc["auths"].size(), 2u) << doc.dump();  // the URL spelling was replaced
  absl::StatusOr<std::optional<RegistryCredentials>> got =
      LookupCredentials(path, "r.example:5000");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->username, "u");
  EXPECT_EQ((*got)->password, "p");

  ASSERT_TRUE(RemoveCredentials(path, "r.example:5000").ok());
  EXPECT_FALSE(LookupCredentials(path, "r.example:5000")->has_value());
  EXPECT_TRUE(LookupCredentials(path, "other:1")->has_value());
  EXPECT_EQ(RemoveCredentials(path, "r.example:5000").code(), absl::StatusCode::kNotFound);
}

TEST(RegistryCredentialsTest, HostSpellings) {
  EXPECT_EQ(CredentialHost("https://index.docker.io/v1/"), "docker.io");
  EXPECT_EQ(CredentialHost("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(CredentialHost("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
  EXPECT_EQ(CredentialHost("quay.io"), "quay.io");
}

}  // namespace
}  // namespace berth::images
