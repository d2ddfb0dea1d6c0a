// containerd's hosts.toml in imaged (--hosts-dir), against real docker-registries on 127.0.0.1
// and `berth pull` through the real imaged, contentd and snapshotd: a mirror serves before the
// upstream (each registry's own access log says who served); a mirror that lacks the image or
// is down is passed over for the upstream; a mirror that refuses our credentials is not; a TLS
// registry is trusted through hosts.toml's `ca` (or docker's ca.crt) and refused without it, or
// reached with skip_verify; a registry that requires a client certificate gets the one
// `client` names; a malformed hosts.toml stops imaged at start, naming the file and line.
// `berth push` and `berth login` go where hosts.toml lets them push, with its CA.

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "integration/registry_test_util.h"
#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

// How many requests for `kRepo`'s manifests and blobs a registry's access log shows.
int ImageRequests(const Registry& registry) {
  return registry.CountRequests(absl::StrCat("/v2/", kRepo, "/manifests/")) +
         registry.CountRequests(absl::StrCat("/v2/", kRepo, "/blobs/"));
}

// containerd's directory name for a host with a port: 127.0.0.1_5000_.
std::string DirName(const Registry& registry) {
  return absl::StrCat("127.0.0.1_", registry.port(), "_");
}

class RegistryHostsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = dir_.Join("layout");
    ASSERT_TRUE(MakeTestImage(layout_, kTag).ok());
    ASSERT_TRUE(stack_.contentd.Start().ok()) << stack_.contentd.ReadLog();
    ASSERT_TRUE(stack_.snapshotd.Start().ok()) << stack_.snapshotd.ReadLog();
  }

  // A registry in a directory of its own; holding the test image when `push`.
  std::unique_ptr<Registry> StartRegistry(const std::string& name, bool push,
                                          Registry::Options options = {}) {
    std::string dir = dir_.Join(name);
    EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir;
    auto registry = std::make_unique<Registry>(dir, options);
    absl::Status started = registry->Start();
    EXPECT_TRUE(started.ok()) << started << registry->ReadLog();
    if (push && started.ok()) {
      absl::Status pushed = registry->Push(layout_, kTag, kRepo);
      EXPECT_TRUE(pushed.ok()) << pushed;
    }
    return registry;
  }

  // hosts_dir/<name>/hosts.toml with `text` (and the host dir made).
  std::string WriteHostsToml(const std::string& name, const std::string& text) {
    std::string dir = absl::StrCat(hosts_dir_, "/", name);
    EXPECT_TRUE(MakeDirs(dir, 0755, 0755).ok()) << dir;
    if (!text.empty()) {
      EXPECT_TRUE(WriteFileAtomic(dir + "/hosts.toml", text, 0644).ok());
    }
    return dir;
  }

  // (Re)starts imaged reading hosts_dir_.
  absl::Status RestartImaged() {
    if (stack_.imaged.running()) {
      stack_.imaged.Stop(absl::Seconds(20));
    }
    return stack_.StartImaged({"--hosts-dir", hosts_dir_});
  }

  CommandResult Pull(const Registry& registry) {
    return stack_.Berth({"pull", absl::StrCat(registry.host(), "/", kRepo, ":", kTag)});
  }

  testing::TempDir dir_;
  std::string layout_;
  std::string hosts_dir_ = dir_.Join("certs.d");
  ImagedStack stack_{dir_.path()};
};

TEST_F(RegistryHostsTest, MirrorServesBeforeTheUpstream) {
  std::unique_ptr<Registry> upstream = StartRegistry("upstream", true);
  std::unique_ptr<Registry> mirror = StartRegistry("mirror", true);
  WriteHostsToml(DirName(*upstream),
                 absl::StrCat("server = \"http://", upstream->host(), "\"\n\n[host.\"http://",
                              mirror->host(), "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"));
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  const int upstream_before = ImageRequests(*upstream);  // skopeo's push

  CommandResult pull = Pull(*upstream);
  ASSERT_EQ(pull.exit_code, 0) << pull.output << stack_.imaged.ReadLog();
  EXPECT_GT(ImageRequests(*mirror), 0) << mirror->ReadLog();
  EXPECT_EQ(ImageRequests(*upstream), upstream_before) << upstream->ReadLog();
}

TEST_F(RegistryHostsTest, MirrorWithoutTheImageOrDownFallsBackToTheUpstream) {
  std::unique_ptr<Registry> upstream = StartRegistry("upstream", true);
  std::unique_ptr<Registry> empty = StartRegistry("empty", false);
  const int down = testing::FreeTcpPort();  // nothing listens there
  // The host as written ("127.0.0.1:PORT") names the directory too.
  WriteHostsToml(upstream->host(), absl::StrCat("server = \"http://", upstream->host(),
                                                "\"\n[host.\"http://127.0.0.1:", down,
                                                "\"]\n[host.\"http://", empty->host(), "\"]\n"));
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  const int upstream_before = ImageRequests(*upstream);

  CommandResult pull = Pull(*upstream);
  ASSERT_EQ(pull.exit_code, 0) << pull.output << stack_.imaged.ReadLog();
  EXPECT_GT(ImageRequests(*empty), 0) << empty->ReadLog();  // asked, answered 404
  EXPECT_GT(ImageRequests(*upstream), upstream_before) << upstream->ReadLog();
  const std::string log = stack_.imaged.ReadLog();
  EXPECT_TRUE(absl::StrContains(log, absl::StrCat("127.0.0.1:", down))) << log;
  EXPECT_TRUE(absl::StrContains(log, absl::StrCat("trying http://", empty->host()))) << log;
}

TEST_F(RegistryHostsTest, MirrorRefusingCredentialsIsNotPassedOver) {
  std::unique_ptr<Registry> upstream = StartRegistry("upstream", true);
  std::string htpasswd = dir_.Join("htpasswd");
  ASSERT_TRUE(WriteFileAtomic(htpasswd, "", 0644).ok());
  Registry::Options options;
  options.htpasswd = htpasswd;
  std::unique_ptr<Registry> locked = StartRegistry("locked", false, options);
  WriteHostsToml(DirName(*upstream), absl::StrCat("server = \"http://", upstream->host(),
                                                  "\"\n[host.\"http://", locked->host(), "\"]\n"));
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  const int upstream_before = ImageRequests(*upstream);

  CommandResult pull = Pull(*upstream);
  EXPECT_NE(pull.exit_code, 0) << pull.output;
  EXPECT_TRUE(absl::StrContains(pull.output, locked->host())) << pull.output;
  EXPECT_TRUE(absl::StrContains(pull.output, "credentials")) << pull.output;
  EXPECT_EQ(ImageRequests(*upstream), upstream_before) << upstream->ReadLog();
}

TEST_F(RegistryHostsTest, TlsRegistryTrustedThroughHostsTomlCaRefusedWithout) {
  testing::TestPki pki = testing::MakeTestPki(dir_.Join(""));
  Registry::Options options;
  options.tls_cert = pki.server_cert;
  options.tls_key = pki.server_key;
  std::unique_ptr<Registry> secure = StartRegistry("secure", true, options);

  // No hosts dir for it: the system CAs do not know the test CA.
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  CommandResult refused = Pull(*secure);
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, "TLS")) << refused.output;

  // hosts.toml's `ca`, relative to the host dir.
  std::string host_dir = WriteHostsToml(
      DirName(*secure), "[host.\"https://" + secure->host() + "\"]\n  ca = \"ca.pem\"\n");
  ASSERT_TRUE(WriteFileAtomic(host_dir + "/ca.pem", *ReadFile(pki.ca), 0644).ok());
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  CommandResult pulled = Pull(*secure);
  EXPECT_EQ(pulled.exit_code, 0) << pulled.output << stack_.imaged.ReadLog();

  // The wrong CA: refused again.
  ASSERT_TRUE(WriteFileAtomic(host_dir + "/ca.pem", *ReadFile(pki.other_ca), 0644).ok());
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  refused = Pull(*secure);
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, "TLS")) << refused.output;

  // skip_verify trusts whatever the server shows.
  WriteHostsToml(DirName(*secure),
                 "[host.\"https://" + secure->host() + "\"]\n  skip_verify = true\n");
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  pulled = Pull(*secure);
  EXPECT_EQ(pulled.exit_code, 0) << pulled.output << stack_.imaged.ReadLog();

  // docker's layout: no hosts.toml, a *.crt in the host dir.
  ASSERT_EQ(::unlink((host_dir + "/hosts.toml").c_str()), 0);
  ASSERT_EQ(::unlink((host_dir + "/ca.pem").c_str()), 0);
  ASSERT_TRUE(WriteFileAtomic(host_dir + "/test-ca.crt", *ReadFile(pki.ca), 0644).ok());
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  pulled = Pull(*secure);
  EXPECT_EQ(pulled.exit_code, 0) << pulled.output << stack_.imaged.ReadLog();
}

TEST_F(RegistryHostsTest, ClientCertificateFromHostsToml) {
  testing::TestPki pki = testing::MakeTestPki(dir_.Join(""));
  Registry::Options options;
  options.tls_cert = pki.server_cert;
  options.tls_key = pki.server_key;
  options.tls_client_ca = pki.ca;
  options.tls_probe_cert = pki.client_cert;
  options.tls_probe_key = pki.client_key;
  std::unique_ptr<Registry> secure = StartRegistry("mtls", false, options);
  // skopeo pushes with the client pair in docker's certs.d layout.
  std::string cert_dir = dir_.Join("skopeo-certs");
  ASSERT_EQ(::mkdir(cert_dir.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomic(cert_dir + "/client.cert", *ReadFile(pki.client_cert), 0644).ok());
  ASSERT_TRUE(WriteFileAtomic(cert_dir + "/client.key", *ReadFile(pki.client_key), 0600).ok());
  int code = 0;
  std::string out = testing::RunCommand(
      std::vector<std::string>{"skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-cert-dir",
                               cert_dir, absl::StrCat("oci:", layout_, ":", kTag),
                               absl::StrCat("docker://", secure->host(), "/", kRepo, ":", kTag)},
      &code);
  ASSERT_EQ(code, 0) << out;

  // The CA alone: the registry refuses the handshake.
  std::string host_dir = WriteHostsToml(DirName(*secure), absl::StrCat("ca = \"", pki.ca, "\"\n"));
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  CommandResult refused = Pull(*secure);
  EXPECT_NE(refused.exit_code, 0) << refused.output;

  // With `client` (absolute paths work as well as relative ones).
  WriteHostsToml(DirName(*secure),
                 absl::StrCat("ca = \"", pki.ca, "\"\nclient = [[\"", pki.client_cert, "\", \"",
                              pki.client_key, "\"]]\n"));
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  CommandResult pulled = Pull(*secure);
  EXPECT_EQ(pulled.exit_code, 0) << pulled.output << stack_.imaged.ReadLog();
}

TEST_F(RegistryHostsTest, MalformedHostsTomlStopsImagedAtStartNamingFileAndLine) {
  std::string host_dir = WriteHostsToml("registry.example.com",
                                        "server = \"https://registry.example.com\"\n"
                                        "[host.\"http://mirror:5000\"]\n"
                                        "  capabilities = [\"pull\", \"teleport\"]\n");
  absl::Status started = stack_.StartImaged({"--hosts-dir", hosts_dir_});
  EXPECT_FALSE(started.ok());
  EXPECT_FALSE(stack_.imaged.running());
  const std::string log = stack_.imaged.ReadLog();
  EXPECT_TRUE(absl::StrContains(log, host_dir + "/hosts.toml:3")) << log;
  EXPECT_TRUE(absl::StrContains(log, "teleport")) << log;
  // Nothing was created: no image store.
  struct stat st {};
  EXPECT_NE(::stat(dir_.Join("imaged-root/images.db").c_str(), &st), 0);

  // Fixed, it starts.
  WriteHostsToml("registry.example.com", "server = \"https://registry.example.com\"\n");
  EXPECT_TRUE(stack_.StartImaged({"--hosts-dir", hosts_dir_}).ok()) << stack_.imaged.ReadLog();
}

TEST_F(RegistryHostsTest, PushAndLoginGoToThePushHostWithItsHostsTomlCa) {
  // The CLI's credential files: the test's own, never the host's.
  const std::string auth_file = dir_.Join("berth-auth.json");
  ::setenv("BERTH_AUTH_FILE", auth_file.c_str(), 1);
  ::setenv("DOCKER_CONFIG", dir_.Join("docker").c_str(), 1);
  testing::TestPki pki = testing::MakeTestPki(dir_.Join(""));
  Registry::Options options;
  options.tls_cert = pki.server_cert;
  options.tls_key = pki.server_key;
  options.htpasswd = dir_.Join("htpasswd");
  WriteHtpasswd(options.htpasswd);
  std::unique_ptr<Registry> secure = StartRegistry("secure", false, options);
  ASSERT_TRUE(secure->Push(layout_, kTag, kRepo, absl::StrCat(kUser, ":", kPassword)).ok());
  // A plain-HTTP mirror that may serve pulls only.
  std::unique_ptr<Registry> mirror = StartRegistry("mirror", true);
  const std::string toml =
      absl::StrCat("server = \"https://", secure->host(), "\"\nca = \"ca.pem\"\n%s\n[host.\"http://",
                   mirror->host(), "\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
  std::string host_dir =
      WriteHostsToml(DirName(*secure), absl::StrReplaceAll(toml, {{"%s", ""}}));
  ASSERT_TRUE(WriteFileAtomic(host_dir + "/ca.pem", *ReadFile(pki.ca), 0644).ok());
  const std::vector<std::string> login = {"login", secure->host(), "-u", kUser, "-p", kPassword};
  auto with = [](std::vector<std::string> args, const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };

  // Without the hosts dir the test CA is unknown: refused, nothing stored.
  CommandResult refused = stack_.Berth(with(login, {"--hosts-dir", dir_.Join("none")}));
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, "TLS")) << refused.output;
  struct stat st {};
  EXPECT_NE(::stat(auth_file.c_str(), &st), 0) << "credentials stored after a failed login";

  CommandResult logged_in = stack_.Berth(with(login, {"--hosts-dir", hosts_dir_}));
  ASSERT_EQ(logged_in.exit_code, 0) << logged_in.output;
  EXPECT_TRUE(absl::StrContains(*ReadFile(auth_file), secure->host()));

  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  const std::string name = absl::StrCat(secure->host(), "/", kRepo, ":", kTag);
  CommandResult pull = stack_.Berth({"pull", "--no-unpack", name});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << stack_.imaged.ReadLog();
  const std::string copy = absl::StrCat(secure->host(), "/test/copy:v2");
  CommandResult push = stack_.Berth({"push", name, copy});
  ASSERT_EQ(push.exit_code, 0) << push.output << stack_.imaged.ReadLog();
  // The TLS server got the upload and the tag; the pull-only mirror not one request of it.
  EXPECT_GT(secure->CountRequests("/v2/test/copy/manifests/v2"), 0) << secure->ReadLog();
  EXPECT_EQ(mirror->CountRequests("/v2/test/copy/"), 0) << mirror->ReadLog();
  int code = 0;
  std::string raw = testing::RunCommand(
      std::vector<std::string>{"skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                               absl::StrCat(kUser, ":", kPassword), "docker://" + copy},
      &code);
  ASSERT_EQ(code, 0) << raw;
  // The manifest exactly as umoci wrote it.
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
  EXPECT_EQ(raw, LayoutBlob(layout_, index["manifests"][0]["digest"].get<std::string>()));

  // No host may push: both refused before anything is sent, naming the registry.
  WriteHostsToml(DirName(*secure),
                 absl::StrReplaceAll(toml, {{"%s", "capabilities = [\"pull\", \"resolve\"]"}}));
  ASSERT_TRUE(RestartImaged().ok()) << stack_.imaged.ReadLog();
  CommandResult denied = stack_.Berth({"push", name, absl::StrCat(secure->host(), "/test/no:v1")});
  EXPECT_NE(denied.exit_code, 0) << denied.output;
  EXPECT_TRUE(absl::StrContains(denied.output, "registry " + secure->host())) << denied.output;
  EXPECT_TRUE(absl::StrContains(denied.output, "can push")) << denied.output;
  EXPECT_EQ(secure->CountRequests("/v2/test/no/"), 0) << secure->ReadLog();
  CommandResult no_login = stack_.Berth(with(login, {"--hosts-dir", hosts_dir_}));
  EXPECT_NE(no_login.exit_code, 0) << no_login.output;
  EXPECT_TRUE(absl::StrContains(no_login.output, "can push")) << no_login.output;
}

}  // namespace
}  // namespace berth::integration
