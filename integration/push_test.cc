// `berth push`, `login` and `logout` end to end (issue 10, the push slice): an image made by
// umoci, pushed by skopeo to a real docker-registry, pulled by berth through the real imaged
// into a real contentd, then pushed by berth to another repository (mounted) and another
// registry (uploaded, monolithic or chunked), and read back by skopeo with identical manifest
// bytes and blob digests. A second push sends nothing. With htpasswd auth: login checks the
// credentials and stores them 0600; wrong ones are refused naming the registry and nothing is
// stored or written by the registry. An unknown image is NotFound. Credentials from docker's
// credential helpers (credsStore in imaged's config, credHelpers in the CLI's) work the same.
// Behind a token server that issues OAuth2 refresh tokens: an identity token in docker's config
// pulls, a wrong one is refused naming the registry, and `berth login` stores the identity token
// it is given (not the password) which the next pull uses.

#include <stdlib.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "integration/harness.h"
#include "integration/registry_test_util.h"
#include "integration/token_server.h"
#include "lib/base/grpc_client.h"
#include "lib/base/posix.h"
#include "lib/content/grpc_content_store.h"
#include "lib/images/grpc_image_store.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

std::string Quote(const std::string& text) { return "'" + text + "'"; }

class PushTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The CLI's credential files: the test's own, never the host's.
    ::setenv("BERTH_AUTH_FILE", auth_file_.c_str(), 1);
    ::setenv("DOCKER_CONFIG", dir_.Join("docker").c_str(), 1);
    image_ = MakeImage(dir_);
    ASSERT_TRUE(contentd_.Start().ok()) << contentd_.ReadLog();
  }

  // A registry with htpasswd auth (kUser, kPassword) holding the test image.
  void StartHtpasswdRegistry() {
    Registry::Options options;
    options.htpasswd = dir_.Join("htpasswd");
    WriteHtpasswd(options.htpasswd);
    StartRegistry(options, absl::StrCat(kUser, ":", kPassword));
  }

  void StartRegistry(const Registry::Options& options = {}, const std::string& creds = "") {
    source_ = std::make_unique<Registry>(dir_.Join("source"), options);
    ASSERT_TRUE(MakeDirs(dir_.Join("source"), 0755).ok());
    ASSERT_TRUE(source_->Start().ok()) << source_->ReadLog();
    absl::Status pushed = source_->Push(image_.layout, kTag, kRepo, creds);
    ASSERT_TRUE(pushed.ok()) << pushed;
  }

  // A registry holding the test image behind the test token server, with anonymous access off:
  // only kUser (by password or identity token) gets in.
  void StartTokenRegistry() {
    token_server_ = std::make_unique<TestTokenServer>(dir_.path());
    absl::Status key = token_server_->MakeKey();
    ASSERT_TRUE(key.ok()) << key;
    token_server_->set_anonymous(false);
    StartRegistry(token_server_->RegistryOptions(), absl::StrCat(kUser, ":", kPassword));
  }

  // Every token request since the `from`th was the OAuth2 POST of the identity token.
  void ExpectTokensByIdentityTokenSince(size_t from) const {
    std::vector<HttpTestRequest> asked = token_server_->requests();
    ASSERT_GT(asked.size(), from) << "no token was asked for";
    for (size_t i = from; i < asked.size(); ++i) {
      EXPECT_EQ(asked[i].method, "POST");
      EXPECT_EQ(asked[i].FormValue("grant_type"), "refresh_token");
      EXPECT_EQ(asked[i].FormValue("refresh_token"), token_server_->refresh_token());
    }
  }

  absl::Status StartImaged(const std::vector<std::string>& extra = {},
                           const std::string& docker_config = "") {
    std::vector<std::string> argv = {
        testing::BinaryPath("services/imaged/imaged"), "--root", dir_.Join("imaged-root"),
        "--state", dir_.Join("imaged-state"), "--address", address_, "--contentd-address",
        contentd_.address(), "--snapshotd-address", dir_.Join("no-snapshotd.sock"),
        "--docker-config", docker_config, "--log-level", "debug"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return imaged_.StartServing("imaged", argv, address_);
  }

  CommandResult Berth(std::vector<std::string> args, const std::string& stdin_text = "") {
    std::string command = absl::StrCat("printf %s ", Quote(stdin_text), " | ",
                                       testing::BinaryPath("tools/berth/berth"),
                                       " --imaged-address ", address_, " --timeout 60s");
    for (const std::string& arg : args) {
      absl::StrAppend(&command, " ", Quote(arg));
    }
    CommandResult result;
    result.output = testing::RunCommand(command + " 2>&1", &result.exit_code);
    return result;
  }

  // Pulls the source image into berth (no unpack); returns the record's name.
  std::string PullSource() {
    std::string name = absl::StrCat(source_->host(), "/", kRepo, ":", kTag);
    CommandResult pull =
        Berth({"pull", "--no-unpack", name, "--insecure-registry", source_->host()});
    EXPECT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
    return name;
  }

  std::string LayoutBlob(const std::string& digest) const { return image_.Blob(digest); }
  std::string ManifestDigest() const { return image_.manifest_digest; }
  // The manifest's config and layers.
  std::vector<std::string> BlobDigests() const {
    nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(ManifestDigest()));
    std::vector<std::string> blobs = {manifest["config"]["digest"]};
    for (const nlohmann::json& layer : manifest["layers"]) {
      blobs.push_back(layer["digest"]);
    }
    return blobs;
  }

  // skopeo reads `reference` back: the manifest bytes as the layout has them, and a copy into
  // an OCI layout (skopeo verifies every blob's digest) holding exactly the layout's blobs.
  void ExpectSkopeoReadsTheImage(const std::string& reference, const std::string& creds = "") {
    std::vector<std::string> auth;
    if (!creds.empty()) {
      auth = {"--creds", creds};
    }
    std::vector<std::string> inspect = {"skopeo", "inspect", "--raw", "--tls-verify=false"};
    inspect.insert(inspect.end(), auth.begin(), auth.end());
    inspect.push_back("docker://" + reference);
    int code = 0;
    std::string raw = testing::RunCommand(inspect, &code);
    ASSERT_EQ(code, 0) << raw;
    EXPECT_EQ(raw, LayoutBlob(ManifestDigest()));

    std::string copy = dir_.Join("copy-" + std::to_string(++copies_));
    std::vector<std::string> argv = {"skopeo", "copy", "--src-tls-verify=false"};
    if (!creds.empty()) {
      argv.push_back("--src-creds=" + creds);
    }
    argv.push_back("docker://" + reference);
    argv.push_back("oci:" + copy + ":v1");
    std::string out = testing::RunCommand(argv, &code);
    ASSERT_EQ(code, 0) << out;
    std::set<std::string> got;
    for (const std::string& file : ListFiles(copy + "/blobs")) {
      got.insert("sha256:" + std::string(absl::StripPrefix(file, "sha256/")));
    }
    std::set<std::string> want = {ManifestDigest()};
    for (const std::string& blob : BlobDigests()) {
      want.insert(blob);
    }
    EXPECT_EQ(got, want);
  }

  // `berth push name reference` (the source registry over plain HTTP) succeeds and skopeo,
  // with kUser's credentials, reads the image back.
  void PushAndReadBackWithCredentials(const std::string& name, const std::string& reference) {
    CommandResult push = Berth({"push", name, reference, "--insecure-registry", source_->host()});
    ASSERT_EQ(push.exit_code, 0) << push.output << imaged_.ReadLog();
    ExpectSkopeoReadsTheImage(reference, absl::StrCat(kUser, ":", kPassword));
  }

  // Nothing of repository `repo` in the source registry's storage.
  void ExpectNoRepository(const std::string& repo) {
    struct stat st {};
    std::string path = dir_.Join("source/registry/docker/registry/v2/repositories/" + repo);
    EXPECT_NE(::stat(path.c_str(), &st), 0) << path << " exists";
  }

  // The registry's access log lines for `method` requests whose path starts with `path`.
  static int CountRequests(const Registry& registry, const std::string& method,
                           const std::string& path) {
    int count = 0;
    for (absl::string_view line : absl::StrSplit(registry.ReadLog(), '\n')) {
      if (absl::StrContains(line, absl::StrCat("\"", method, " ", path))) {
        ++count;
      }
    }
    return count;
  }

  testing::TempDir dir_;
  TestImage image_;
  std::string auth_file_ = dir_.Join("berth-auth/auth.json");
  std::unique_ptr<Registry> source_;
  Contentd contentd_{dir_.path(), Contentd::Options{}};
  std::string address_ = dir_.Join("imaged.sock");
  DaemonProcess imaged_{dir_.path()};
  int copies_ = 0;
  std::unique_ptr<TestTokenServer> token_server_;
};

TEST_F(PushTest, UploadsToAnotherRegistryReadBackBySkopeoThenSecondPushSendsNothing) {
  StartRegistry();
  ASSERT_TRUE(StartImaged().ok());
  std::string name = PullSource();
  Registry target(dir_.Join("target"));
  ASSERT_TRUE(MakeDirs(dir_.Join("target"), 0755).ok());
  ASSERT_TRUE(target.Start().ok()) << target.ReadLog();
  std::string reference = absl::StrCat(target.host(), "/test/copy:v1");

  CommandResult push = Berth({"push", name, reference, "--insecure-registry", target.host()});
  ASSERT_EQ(push.exit_code, 0) << push.output << imaged_.ReadLog();
  EXPECT_TRUE(absl::StrContains(push.output, absl::StrCat("pushed ", reference, " ",
                                                          ManifestDigest())))
      << push.output;
  for (const std::string& blob : BlobDigests()) {
    EXPECT_TRUE(absl::StrContains(push.output, blob + " uploading")) << blob << push.output;
    EXPECT_TRUE(absl::StrContains(push.output, blob + " done")) << blob << push.output;
  }
  EXPECT_TRUE(absl::StrContains(push.output, ManifestDigest() + " done")) << push.output;
  // Small blobs: one PUT each, no chunks.
  EXPECT_EQ(CountRequests(target, "PATCH", "/v2/test/copy/"), 0) << target.ReadLog();
  ExpectSkopeoReadsTheImage(reference);

  // Again: the registry has everything; nothing is uploaded, not even the manifest.
  int puts = CountRequests(target, "PUT", "/v2/test/copy/");
  int posts = CountRequests(target, "POST", "/v2/test/copy/");
  EXPECT_EQ(posts, static_cast<int>(BlobDigests().size())) << target.ReadLog();
  CommandResult again = Berth({"push", name, reference, "--insecure-registry", target.host()});
  ASSERT_EQ(again.exit_code, 0) << again.output << imaged_.ReadLog();
  for (const std::string& blob : BlobDigests()) {
    EXPECT_TRUE(absl::StrContains(again.output, blob + " exists")) << blob << again.output;
  }
  EXPECT_TRUE(absl::StrContains(again.output, ManifestDigest() + " exists")) << again.output;
  EXPECT_FALSE(absl::StrContains(again.output, "uploading")) << again.output;
  EXPECT_EQ(CountRequests(target, "PUT", "/v2/test/copy/"), puts) << target.ReadLog();
  EXPECT_EQ(CountRequests(target, "POST", "/v2/test/copy/"), posts) << target.ReadLog();
}

TEST_F(PushTest, SecondRepositoryOfTheSameRegistryIsMountedNotUploaded) {
  StartRegistry();
  ASSERT_TRUE(StartImaged().ok());
  std::string name = PullSource();
  std::string reference = absl::StrCat(source_->host(), "/test/mounted:v1");

  // The flag before the arguments, as docker users write it.
  CommandResult push = Berth({"push", "--insecure-registry", source_->host(), name, reference});
  ASSERT_EQ(push.exit_code, 0) << push.output << imaged_.ReadLog();
  for (const std::string& blob : BlobDigests()) {
    EXPECT_TRUE(absl::StrContains(push.output, blob + " mounted")) << blob << push.output;
  }
  // The registry saw one mount request per blob and no upload at all.
  EXPECT_EQ(CountRequests(*source_, "POST", "/v2/test/mounted/blobs/uploads/?mount="),
            static_cast<int>(BlobDigests().size()))
      << source_->ReadLog();
  EXPECT_EQ(CountRequests(*source_, "PUT", "/v2/test/mounted/blobs/"), 0) << source_->ReadLog();
  EXPECT_EQ(CountRequests(*source_, "PATCH", "/v2/test/mounted/blobs/"), 0);
  ExpectSkopeoReadsTheImage(reference);
}

TEST_F(PushTest, LargeBlobsGoInChunks) {
  StartRegistry();
  // The test image's largest layer is ~300 KiB: 64 KiB chunks make several PATCHes.
  ASSERT_TRUE(StartImaged({"--upload-chunk-size", "65536"}).ok());
  std::string name = PullSource();
  Registry target(dir_.Join("target"));
  ASSERT_TRUE(MakeDirs(dir_.Join("target"), 0755).ok());
  ASSERT_TRUE(target.Start().ok()) << target.ReadLog();
  std::string reference = absl::StrCat(target.host(), "/test/chunked:v1");

  CommandResult push = Berth({"push", name, reference, "--insecure-registry", target.host()});
  ASSERT_EQ(push.exit_code, 0) << push.output << imaged_.ReadLog();
  int64_t expected = 0;
  nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(ManifestDigest()));
  for (const nlohmann::json& layer : manifest["layers"]) {
    int64_t size = layer["size"];
    expected += size > 65536 ? (size + 65535) / 65536 : 0;
  }
  ASSERT_GE(expected, 2);
  EXPECT_EQ(CountRequests(target, "PATCH", "/v2/test/chunked/blobs/uploads/"), expected)
      << target.ReadLog();
  ExpectSkopeoReadsTheImage(reference);
}

TEST_F(PushTest, LoginStoresCheckedCredentialsAndPushUsesThem) {
  StartHtpasswdRegistry();
  ASSERT_TRUE(StartImaged().ok());
  const std::string host = source_->host();

  // A wrong password: refused naming the registry; nothing stored.
  CommandResult wrong = Berth({"login", host, "-u", kUser, "--password-stdin",
                               "--insecure-registry", host},
                              "wrong\n");
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  EXPECT_TRUE(absl::StrContains(wrong.output, "registry " + host)) << wrong.output;
  struct stat st {};
  EXPECT_NE(::stat(auth_file_.c_str(), &st), 0) << "credentials stored after a failed login";

  // Without credentials the pull is refused.
  std::string name = absl::StrCat(host, "/", kRepo, ":", kTag);
  CommandResult anonymous = Berth({"pull", "--no-unpack", name, "--insecure-registry", host});
  EXPECT_EQ(anonymous.exit_code, 1) << anonymous.output;

  CommandResult login = Berth(
      {"login", host, "-u", kUser, "--password-stdin", "--insecure-registry", host},
      std::string(kPassword) + "\n");
  ASSERT_EQ(login.exit_code, 0) << login.output;
  ASSERT_EQ(::stat(auth_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(absl::StrContains(*ReadFile(auth_file_), host));

  // Pull and push with the stored credentials (sent by the CLI on the requests).
  CommandResult pull = Berth({"pull", "--no-unpack", name, "--insecure-registry", host});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  std::string reference = absl::StrCat(host, "/test/authed:v1");
  ASSERT_NO_FATAL_FAILURE(PushAndReadBackWithCredentials(name, reference));

  // Logged out: the push is refused, naming the registry, and the registry stores nothing.
  CommandResult logout = Berth({"logout", host});
  ASSERT_EQ(logout.exit_code, 0) << logout.output;
  EXPECT_FALSE(absl::StrContains(*ReadFile(auth_file_), host));
  EXPECT_EQ(Berth({"logout", host}).exit_code, 1);
  CommandResult denied = Berth({"push", name, absl::StrCat(host, "/test/denied:v1"),
                                "--insecure-registry", host});
  EXPECT_EQ(denied.exit_code, 1) << denied.output;
  EXPECT_TRUE(absl::StrContains(denied.output, "registry " + host)) << denied.output;
  ExpectNoRepository("test/denied");
}

TEST_F(PushTest, WrongStoredCredentialsAreRefusedNamingTheRegistry) {
  StartHtpasswdRegistry();
  ASSERT_TRUE(StartImaged().ok());
  const std::string host = source_->host();
  // Right credentials to pull, in docker's config (the CLI reads it too).
  ASSERT_TRUE(MakeDirs(dir_.Join("docker"), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("docker/config.json"),
                              absl::StrCat(R"({"auths": {")", host, R"(": {"username": ")", kUser,
                                           R"(", "password": ")", kPassword, R"("}}})"),
                              0600)
                  .ok());
  std::string name = absl::StrCat(host, "/", kRepo, ":", kTag);
  CommandResult pull = Berth({"pull", "--no-unpack", name, "--insecure-registry", host});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  // Wrong ones in berth's file, which comes first.
  ASSERT_TRUE(MakeDirs(dir_.Join("berth-auth"), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(auth_file_,
                              absl::StrCat(R"({"auths": {")", host,
                                           R"(": {"username": "berth", "password": "nope"}}})"),
                              0600)
                  .ok());
  CommandResult push = Berth({"push", name, absl::StrCat(host, "/test/denied:v1"),
                              "--insecure-registry", host});
  EXPECT_EQ(push.exit_code, 1) << push.output;
  EXPECT_TRUE(absl::StrContains(push.output, "registry " + host)) << push.output;
  ExpectNoRepository("test/denied");
}

TEST_F(PushTest, ImagedUsesItsDockerConfigWhenTheRequestCarriesNoCredentials) {
  StartHtpasswdRegistry();
  const std::string host = source_->host();
  // imaged's own file; the CLI has none (its files are the test's, empty).
  std::string config = dir_.Join("imaged-docker/config.json");
  ASSERT_TRUE(MakeDirs(dir_.Join("imaged-docker"), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(config,
                              absl::StrCat(R"({"auths": {"http://)", host, R"(/v2/": {"auth": ")",
                                           absl::Base64Escape(absl::StrCat(kUser, ":", kPassword)),
                                           R"("}}})"),
                              0600)
                  .ok());
  ASSERT_TRUE(StartImaged({}, config).ok());
  std::string name = PullSource();
  std::string reference = absl::StrCat(host, "/test/fromfile:v1");
  ASSERT_NO_FATAL_FAILURE(PushAndReadBackWithCredentials(name, reference));
}

TEST_F(PushTest, CredentialHelpersOfImagedAndOfTheCliAreAsked) {
  StartHtpasswdRegistry();
  const std::string host = source_->host();
  // docker-credential-berthtest, in a PATH directory of the test's, knows this registry and
  // logs what it was asked for.
  const std::string bin = dir_.Join("bin");
  const std::string calls = dir_.Join("helper-calls");
  ASSERT_TRUE(MakeDirs(bin, 0755).ok());
  ASSERT_TRUE(
      WriteFileAtomic(
          bin + "/docker-credential-berthtest",
          absl::StrCat("#!/bin/sh\nread -r url\necho \"$1 $url\" >> ", calls,
                       "\nif [ \"$url\" = \"", host, "\" ]; then printf '{\"ServerURL\":\"%s\","
                       "\"Username\":\"", kUser, "\",\"Secret\":\"", kPassword,
                       "\"}' \"$url\"; exit 0; fi\n"
                       "echo 'credentials not found in native keychain'; exit 1\n"),
          0755)
          .ok());
  ::setenv("PATH", absl::StrCat(bin, ":", std::getenv("PATH")).c_str(), 1);

  // imaged's own docker config names the helper as its store; the CLI has no credentials.
  const std::string config = dir_.Join("imaged-docker/config.json");
  ASSERT_TRUE(MakeDirs(dir_.Join("imaged-docker"), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(config, R"({"auths": {}, "credsStore": "berthtest"})", 0600).ok());
  ASSERT_TRUE(StartImaged({}, config).ok());
  std::string name = PullSource();
  std::string reference = absl::StrCat(host, "/test/helped:v1");
  ASSERT_NO_FATAL_FAILURE(PushAndReadBackWithCredentials(name, reference));
  absl::StatusOr<std::string> asked = ReadFile(calls);
  ASSERT_TRUE(asked.ok()) << "the helper was never run";
  EXPECT_TRUE(absl::StrContains(*asked, "get " + host)) << *asked;

  // Now imaged has no file and the CLI's docker config names the helper for this host.
  imaged_.Stop(absl::Seconds(20));
  ASSERT_TRUE(StartImaged({}, "").ok());
  ASSERT_TRUE(WriteFileAtomic(calls, "", 0644).ok());
  ASSERT_TRUE(MakeDirs(dir_.Join("docker"), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("docker/config.json"),
                              absl::StrCat(R"({"credHelpers": {")", host, R"(": "berthtest"}})"),
                              0600)
                  .ok());
  ASSERT_NO_FATAL_FAILURE(
      PushAndReadBackWithCredentials(name, absl::StrCat(host, "/test/cli-helped:v1")));
  EXPECT_TRUE(absl::StrContains(*ReadFile(calls), "get " + host)) << *ReadFile(calls);

  // A helper that is not installed: the push is refused naming it, and nothing is written.
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("docker/config.json"),
                              absl::StrCat(R"({"credHelpers": {")", host, R"(": "gone"}})"), 0600)
                  .ok());
  CommandResult push =
      Berth({"push", name, absl::StrCat(host, "/test/denied:v1"), "--insecure-registry", host});
  EXPECT_EQ(push.exit_code, 1) << push.output;
  EXPECT_TRUE(absl::StrContains(push.output, "docker-credential-gone")) << push.output;
  ExpectNoRepository("test/denied");
}

TEST_F(PushTest, IdentityTokenInImagedsDockerConfigPulls) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  const std::string host = source_->host();
  // As `docker login` leaves it against such a server: "user:" and the identity token.
  const std::string config = dir_.Join("imaged-docker/config.json");
  auto write_config = [&](const std::string& token) {
    ASSERT_TRUE(MakeDirs(dir_.Join("imaged-docker"), 0700).ok());
    ASSERT_TRUE(WriteFileAtomic(config,
                                nlohmann::json({{"auths",
                                                 {{host,
                                                   {{"auth", absl::Base64Escape(
                                                                 absl::StrCat(kUser, ":"))},
                                                    {"identitytoken", token}}}}}})
                                    .dump(),
                                0600)
                    .ok());
  };
  ASSERT_NO_FATAL_FAILURE(write_config(token_server_->refresh_token()));
  ASSERT_TRUE(StartImaged({}, config).ok());
  const size_t before = token_server_->requests().size();
  PullSource();
  ExpectTokensByIdentityTokenSince(before);

  // A wrong one (imaged reads its file at each pull): refused, naming the registry.
  ASSERT_NO_FATAL_FAILURE(write_config("revoked"));
  CommandResult pull = Berth({"pull", "--no-unpack", absl::StrCat(host, "/", kRepo, ":", kTag),
                              "--insecure-registry", host});
  EXPECT_EQ(pull.exit_code, 1) << pull.output;
  EXPECT_TRUE(absl::StrContains(pull.output, "registry " + host)) << pull.output;
  EXPECT_TRUE(absl::StrContains(pull.output, "identity token")) << pull.output;
}

TEST_F(PushTest, LoginStoresTheIdentityTokenItIsGivenAndPullUsesIt) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  ASSERT_TRUE(StartImaged().ok());
  const std::string host = source_->host();
  CommandResult login = Berth(
      {"login", host, "-u", kUser, "--password-stdin", "--insecure-registry", host},
      std::string(kPassword) + "\n");
  ASSERT_EQ(login.exit_code, 0) << login.output;
  struct stat st {};
  ASSERT_EQ(::stat(auth_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string stored = *ReadFile(auth_file_);
  nlohmann::json entry = nlohmann::json::parse(stored)["auths"][host];
  EXPECT_EQ(entry.value("identitytoken", ""), token_server_->refresh_token()) << stored;
  EXPECT_EQ(entry.value("auth", ""), absl::Base64Escape(absl::StrCat(kUser, ":"))) << stored;
  EXPECT_FALSE(absl::StrContains(stored, kPassword)) << "the password was stored: " << stored;

  // The pull (the CLI sends the stored identity token) gets its tokens with it.
  const size_t before = token_server_->requests().size();
  PullSource();
  ExpectTokensByIdentityTokenSince(before);
}

TEST_F(PushTest, BlobMissingFromTheContentStoreFailsBeforeAnythingIsSent) {
  StartRegistry();
  ASSERT_TRUE(StartImaged().ok());
  std::string name = PullSource();
  std::string layer = BlobDigests().back();
  CommandResult rm = Berth({"--contentd-address", contentd_.address(), "content", "rm", layer});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;

  std::string reference = absl::StrCat(source_->host(), "/test/partial:v1");
  CommandResult push = Berth({"push", name, reference, "--insecure-registry", source_->host()});
  EXPECT_EQ(push.exit_code, 1) << push.output;
  EXPECT_TRUE(absl::StrContains(push.output, layer + " is not in the content store"))
      << push.output;
  EXPECT_EQ(CountRequests(*source_, "HEAD", "/v2/test/partial/"), 0) << source_->ReadLog();
  EXPECT_EQ(CountRequests(*source_, "POST", "/v2/test/partial/"), 0) << source_->ReadLog();
  ExpectNoRepository("test/partial");
}

// A two-platform index (the test manifest, and a copy of it with an annotation) written into
// contentd with its record made through imaged's Images API: the index and both manifests are
// pushed, and skopeo reads each back byte for byte. Without one of the manifests in contentd the
// push is refused naming it.
TEST_F(PushTest, IndexAndEveryManifestArePushed) {
  StartRegistry();
  ASSERT_TRUE(StartImaged().ok());
  content::GrpcContentStore content(Dial(contentd_.address()));
  Context ctx;
  ctx.ns = "default";
  ctx = ctx.WithTimeout(absl::Seconds(60));
  const content::Labels root = {{"containerd.io/gc.root", "2026-01-01T00:00:00Z"}};
  auto write = [&](const std::string& data) {
    std::string digest = Sha256Digest(data);
    absl::Status st = content::WriteBlob(content, ctx, "push-test-" + digest, data,
                                         *Digest::Parse(digest), root);
    EXPECT_TRUE(st.ok()) << st;
    return digest;
  };
  std::vector<std::string> blobs = BlobDigests();
  for (const std::string& blob : blobs) {
    write(LayoutBlob(blob));
  }
  std::string amd64 = LayoutBlob(ManifestDigest());
  nlohmann::json other = nlohmann::json::parse(amd64);
  other["annotations"]["org.example.copy"] = "arm64";
  std::string arm64 = other.dump();
  nlohmann::json index = {
      {"schemaVersion", 2},
      {"mediaType", images::kOciIndex},
      {"manifests",
       {{{"mediaType", images::kOciManifest}, {"digest", Sha256Digest(amd64)},
         {"size", amd64.size()}, {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
        {{"mediaType", images::kOciManifest}, {"digest", Sha256Digest(arm64)},
         {"size", arm64.size()}, {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}}}}};
  std::string index_raw = index.dump();
  write(amd64);
  images::GrpcImageStore records(Dial(address_));
  images::Image image;
  image.name = "example.com/multi:v1";
  image.target.media_type = std::string(images::kOciIndex);
  image.target.digest = *Digest::Parse(write(index_raw));
  image.target.size = static_cast<int64_t>(index_raw.size());
  ASSERT_TRUE(records.Create(ctx, image).ok());

  // The arm64 manifest is not in contentd yet.
  std::string reference = absl::StrCat(source_->host(), "/test/multi:v1");
  CommandResult partial =
      Berth({"push", image.name, reference, "--insecure-registry", source_->host()});
  EXPECT_EQ(partial.exit_code, 1) << partial.output;
  EXPECT_TRUE(absl::StrContains(partial.output,
                                "manifest " + Sha256Digest(arm64) + " is not in the content store"))
      << partial.output;

  write(arm64);
  CommandResult push = Berth({"push", image.name, reference, "--insecure-registry", source_->host()});
  ASSERT_EQ(push.exit_code, 0) << push.output << imaged_.ReadLog();
  EXPECT_TRUE(absl::StrContains(push.output, Sha256Digest(index_raw) + " done")) << push.output;
  for (const auto& [digest, raw] : {std::pair{Sha256Digest(index_raw), index_raw},
                                    std::pair{Sha256Digest(amd64), amd64},
                                    std::pair{Sha256Digest(arm64), arm64}}) {
    int code = 0;
    std::string got = testing::RunCommand(
        std::vector<std::string>{"skopeo", "inspect", "--raw", "--tls-verify=false",
                                 absl::StrCat("docker://", source_->host(), "/test/multi@", digest)},
        &code);
    ASSERT_EQ(code, 0) << got;
    EXPECT_EQ(got, raw) << digest;
  }
  int code = 0;
  std::string tagged = testing::RunCommand(
      std::vector<std::string>{"skopeo", "inspect", "--raw", "--tls-verify=false",
                               "docker://" + reference},
      &code);
  EXPECT_EQ(tagged, index_raw);
}

TEST_F(PushTest, UnknownImageIsNotFound) {
  StartRegistry();
  ASSERT_TRUE(StartImaged().ok());
  auto stub = distribution::v1::Distribution::NewStub(Dial(address_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  distribution::v1::PushRequest request;
  request.set_name(absl::StrCat(source_->host(), "/test/none:v1"));
  request.add_plain_http_hosts(source_->host());
  auto reader = stub->Push(&context, request);
  distribution::v1::PushProgress message;
  int messages = 0;
  while (reader->Read(&message)) {
    ++messages;
  }
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_EQ(messages, 0);
  EXPECT_EQ(CountRequests(*source_, "HEAD", "/v2/test/none/"), 0);
  EXPECT_EQ(CountRequests(*source_, "POST", "/v2/test/none/"), 0);
}

}  // namespace
}  // namespace berth::integration
