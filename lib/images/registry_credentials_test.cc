// docker-style credential files: parsing both entry forms, host spellings, bad entries refused,
// and the stored file 0600, replaced atomically, other keys kept; docker's credential helpers
// (credHelpers, credsStore) run as real programs from a PATH directory the test writes.

#include "lib/images/registry_credentials.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth::images {
namespace {

// A PATH directory of docker-credential-* scripts, in front of the PATH for the test's life.
class HelperPath {
 public:
  HelperPath() : old_path_(std::getenv("PATH") != nullptr ? std::getenv("PATH") : "") {
    ::setenv("PATH", absl::StrCat(dir_.path(), ":", old_path_).c_str(), 1);
  }
  ~HelperPath() { ::setenv("PATH", old_path_.c_str(), 1); }
  // docker-credential-<name>, a shell script with `body`.
  void Write(const std::string& name, const std::string& body) {
    std::string path = dir_.Join("docker-credential-" + name);
    ASSERT_TRUE(WriteFileAtomic(path, "#!/bin/sh\n" + body, 0755).ok());
  }
  std::string Join(const std::string& name) const { return dir_.Join(name); }

 private:
  testing::TempDir dir_;
  std::string old_path_;
};

// A helper that knows one server: it records its arguments and stdin, then answers as
// docker-credential-helpers' programs do.
std::string OneServerHelper(const std::string& log, const std::string& server,
                            const std::string& user, const std::string& secret) {
  return absl::StrCat("echo \"$@\" > ", log, ".args\nread -r url; echo \"$url\" > ", log,
                      ".stdin\nif [ \"$url\" = \"", server,
                      "\" ]; then printf '{\"ServerURL\":\"%s\",\"Username\":\"", user,
                      "\",\"Secret\":\"", secret,
                      "\"}' \"$url\"; exit 0; fi\necho 'credentials not found in native keychain'\n"
                      "exit 1\n");
}

TEST(RegistryCredentialsTest, ParsesAuthAndUsernamePasswordByHost) {
  // "dXNlcjpwYTpzcw==" is base64 of "user:pa:ss" (a password may hold ':').
  absl::StatusOr<std::map<std::string, RegistryCredentials>> creds = ParseCredentials(R"({
    "auths": {
      "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
      "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
      "https://ghcr.io/v2/": {"auth": "YTpi"},
      "token.only": {"identitytoken": "x"},
      "token.user": {"auth": "dTo=", "identitytoken": "y"},
      "helper.placeholder": {}
    },
    "credsStore": "desktop"
  })");
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_EQ(creds->size(), 5u);
  EXPECT_EQ((*creds)["127.0.0.1:5000"].username, "user");
  EXPECT_EQ((*creds)["127.0.0.1:5000"].password, "pa:ss");
  EXPECT_EQ((*creds)["docker.io"].username, "hub");
  EXPECT_EQ((*creds)["docker.io"].password, "pw");
  EXPECT_EQ((*creds)["ghcr.io"].username, "a");
  // docker's identity tokens (OAuth2 refresh tokens), with or without "user:" beside them.
  EXPECT_EQ((*creds)["token.only"].identity_token, "x");
  EXPECT_EQ((*creds)["token.only"].username, "");
  EXPECT_EQ((*creds)["token.user"].identity_token, "y");
  EXPECT_EQ((*creds)["token.user"].username, "u");
  EXPECT_EQ((*creds)["token.user"].password, "");
  EXPECT_EQ((*creds)["docker.io"].identity_token, "");
}

TEST(RegistryCredentialsTest, AnIdentityTokenIsStoredAsDockerDoesWithoutThePassword) {
  testing::TempDir dir;
  const std::string path = dir.Join("auth.json");
  RegistryCredentials creds;
  creds.username = "u";
  creds.identity_token = "refresh-1";
  ASSERT_TRUE(StoreCredentials(path, "r.example:5000", creds).ok());
  nlohmann::json doc = nlohmann::json::parse(*ReadFile(path));
  EXPECT_EQ(doc["auths"]["r.example:5000"],
            nlohmann::json({{"auth", "dTo="}, {"identitytoken", "refresh-1"}}));  // "u:"
  absl::StatusOr<std::optional<RegistryCredentials>> got =
      LookupCredentials(path, "r.example:5000");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->identity_token, "refresh-1");
  EXPECT_EQ((*got)->username, "u");
  // A password login later replaces it.
  ASSERT_TRUE(StoreCredentials(path, "r.example:5000", {"u", "p"}).ok());
  got = LookupCredentials(path, "r.example:5000");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->identity_token, "");
  EXPECT_EQ((*got)->password, "p");
}

TEST(RegistryCredentialsTest, AHungHelperIsKilledAtItsTimeout) {
  HelperPath path;
  // It records its PID and its child's, then waits forever.
  path.Write("hung", absl::StrCat("echo $$ > ", path.Join("hung.pid"), "\nsleep 600 &\necho $! > ",
                                  path.Join("hung.child"), "\nwait\n"));
  testing::TempDir dir;
  const std::string config = dir.Join("config.json");
  ASSERT_TRUE(WriteFileAtomic(config, R"({"credsStore": "hung"})", 0600).ok());
  HelperLimits limits;
  limits.timeout = absl::Milliseconds(300);
  absl::StatusOr<std::optional<RegistryCredentials>> creds =
      LookupCredentials(config, "127.0.0.1:5000", limits);
  ASSERT_EQ(creds.status().code(), absl::StatusCode::kDeadlineExceeded) << creds.status();
  EXPECT_TRUE(absl::StrContains(creds.status().message(), "docker-credential-hung"))
      << creds.status();
  EXPECT_TRUE(absl::StrContains(creds.status().message(), "127.0.0.1:5000")) << creds.status();
  for (const char* file : {"hung.pid", "hung.child"}) {
    int pid = 0;
    ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(*ReadFile(path.Join(file))), &pid));
    EXPECT_TRUE(testing::WaitUntilNotRunning(pid, absl::Seconds(10))) << file << " " << pid;
  }

  // The request's deadline bounds it too (the default 30 s would not end this test).
  Context ctx = Context().WithTimeout(absl::Milliseconds(300));
  HelperLimits bounded;
  bounded.ctx = &ctx;
  creds = LookupCredentials(config, "127.0.0.1:5000", bounded);
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kDeadlineExceeded) << creds.status();
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

TEST(RegistryCredentialsTest, CredHelpersAndCredsStoreAreRunWithTheServerOnStdin) {
  HelperPath path;
  path.Write("per-host", OneServerHelper(path.Join("per-host"), "127.0.0.1:5000", "u1", "s1"));
  path.Write("store", OneServerHelper(path.Join("store"), "https://index.docker.io/v1/", "hub",
                                      "s2"));
  testing::TempDir dir;
  const std::string config = dir.Join("config.json");
  ASSERT_TRUE(WriteFileAtomic(config, R"({
    "auths": {"127.0.0.1:5000": {"auth": "bm90Om1l"}, "other:1": {"auth": "YTpi"}},
    "credHelpers": {"https://127.0.0.1:5000": "per-host", "absent.example": "per-host"},
    "credsStore": "store"
  })", 0600).ok());

  // credHelpers names this host's helper: its answer, not the auths entry ("not:me").
  absl::StatusOr<std::optional<RegistryCredentials>> creds =
      LookupCredentials(config, "127.0.0.1:5000");
  ASSERT_TRUE(creds.ok()) << creds.status();
  ASSERT_TRUE(creds->has_value());
  EXPECT_EQ((*creds)->username, "u1");
  EXPECT_EQ((*creds)->password, "s1");
  EXPECT_EQ(ReadFile(path.Join("per-host.args")).value_or(""), "get\n");
  EXPECT_EQ(ReadFile(path.Join("per-host.stdin")).value_or(""), "127.0.0.1:5000\n");

  // Every other host goes to credsStore; docker.io is asked as docker's index URL.
  creds = LookupCredentials(config, "docker.io");
  ASSERT_TRUE(creds.ok()) << creds.status();
  ASSERT_TRUE(creds->has_value());
  EXPECT_EQ((*creds)->username, "hub");
  EXPECT_EQ((*creds)->password, "s2");
  // The store knows nothing of other:1 and says so: none (its auths entry is not used).
  creds = LookupCredentials(config, "other:1");
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_FALSE(creds->has_value());
  creds = LookupCredentials(config, "absent.example");
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_FALSE(creds->has_value());
}

TEST(RegistryCredentialsTest, BrokenOrMissingHelperIsAnErrorNamingIt) {
  HelperPath path;
  path.Write("garbage", "echo 'hello'\n");
  path.Write("crash", "echo 'the keyring is locked'\nexit 3\n");
  path.Write("token", R"(echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}')");
  testing::TempDir dir;
  const std::string config = dir.Join("config.json");
  auto lookup = [&](const std::string& helper) {
    EXPECT_TRUE(
        WriteFileAtomic(config, absl::StrCat(R"({"credsStore": ")", helper, R"("})"), 0600).ok());
    return LookupCredentials(config, "127.0.0.1:5000");
  };
  absl::StatusOr<std::optional<RegistryCredentials>> creds = lookup("not-installed");
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(creds.status().message().find("docker-credential-not-installed"), std::string::npos)
      << creds.status();
  creds = lookup("garbage");
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(creds.status().message().find("docker-credential-garbage"), std::string::npos)
      << creds.status();
  creds = lookup("crash");
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(creds.status().message().find("the keyring is locked"), std::string::npos)
      << creds.status();
  EXPECT_NE(creds.status().message().find("exit 3"), std::string::npos) << creds.status();
  creds = lookup("token");  // docker's spelling of an identity token
  ASSERT_TRUE(creds.ok() && creds->has_value()) << creds.status();
  EXPECT_EQ((*creds)->identity_token, "refresh");
  EXPECT_EQ((*creds)->username, "");
  EXPECT_EQ((*creds)->password, "");
  creds = lookup("../../bin/sh");
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::images
