// containerd's hosts.toml as berth reads it (lib/images/hosts_config.h): mirrors in file order
// before the server, capabilities, ca/client paths relative to the host dir, headers,
// override_path, docker's certificate files, the directory names tried for a host, and
// malformed files refused with the file, line and key. The TLS and fallback behaviour against
// real registries is integration/registry_hosts_test.cc.

#include "lib/images/hosts_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth::images {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class HostsConfigTest : public ::testing::Test {
 protected:
  std::string HostDir(const std::string& name) {
    std::string dir = dir_.Join(name);
    ::mkdir(dir.c_str(), 0755);
    return dir;
  }
  void Write(const std::string& path, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomic(path, text, 0644).ok()) << path;
  }

  testing::TempDir dir_;
};

TEST_F(HostsConfigTest, MirrorsInFileOrderThenTheServer) {
  std::string dir = HostDir("registry.example.com");
  Write(dir + "/ca.pem", "CA-ONE\n");
  Write(dir + "/b.pem", "CA-TWO\n");
  Write(dir + "/client.cert", "CERT");
  Write(dir + "/client.key", "KEY");
  Write(dir + "/hosts.toml", R"(
server = "https://registry.example.com"
capabilities = ["pull", "resolve", "push"]

[host."http://zzz-mirror:5000"]
  capabilities = ["pull", "resolve"]
  header = { X-Tenant = "a", X-Many = ["1", "2"] }

[host."https://aaa-mirror/prefix/"]
  capabilities = ["pull"]
  ca = ["ca.pem", "b.pem"]
  client = [["client.cert", "client.key"]]
  skip_verify = true

[host."https://raw.example.com/api"]
  override_path = true
)");
  absl::StatusOr<std::vector<RegistryEndpoint>> endpoints = LoadHostDir(dir);
  ASSERT_TRUE(endpoints.ok()) << endpoints.status();
  ASSERT_EQ(endpoints->size(), 4u);
  // File order, not the sorted order toml++ keeps keys in.
  const RegistryEndpoint& first = (*endpoints)[0];
  EXPECT_EQ(first.BaseUrl(), "http://zzz-mirror:5000/v2/");
  EXPECT_TRUE(first.config.plain_http);
  EXPECT_TRUE(first.pull && first.resolve && !first.push);
  EXPECT_THAT(first.config.headers, ElementsAre("X-Many: 1", "X-Many: 2", "X-Tenant: a"));

  const RegistryEndpoint& second = (*endpoints)[1];
  EXPECT_EQ(second.BaseUrl(), "https://aaa-mirror/prefix/v2/");
  EXPECT_TRUE(second.pull && !second.resolve && !second.push);
  EXPECT_EQ(second.config.ca_pem, "CA-ONE\n\nCA-TWO\n\n");
  EXPECT_EQ(second.config.client_cert, dir + "/client.cert");
  EXPECT_EQ(second.config.client_key, dir + "/client.key");
  EXPECT_TRUE(second.config.skip_verify);

  EXPECT_EQ((*endpoints)[2].BaseUrl(), "https://raw.example.com/api/");
  const RegistryEndpoint& server = (*endpoints)[3];
  EXPECT_EQ(server.BaseUrl(), "https://registry.example.com/v2/");
  EXPECT_TRUE(server.pull && server.resolve && server.push);
}

TEST_F(HostsConfigTest, NoServerMeansTheHostItselfWithTheFlagsAndCredentials) {
  std::string dir = HostDir("_default");
  Write(dir + "/hosts.toml", "[host.\"http://mirror:5000\"]\n");
  absl::StatusOr<std::map<std::string, std::vector<RegistryEndpoint>>> dirs =
      LoadHostsDir(dir_.path());
  ASSERT_TRUE(dirs.ok()) << dirs.status();
  RegistryClientOptions options;
  options.host_dirs = *dirs;
  options.hosts["127.0.0.1:5000"].plain_http = true;  // --insecure-registry
  options.hosts["127.0.0.1:5000"].username = "u";
  options.hosts["mirror:5000"].password = "p";

  std::vector<RegistryEndpoint> endpoints = ResolveEndpoints(options, "127.0.0.1:5000");
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0].BaseUrl(), "http://mirror:5000/v2/");
  EXPECT_EQ(endpoints[0].config.password, "p");
  EXPECT_EQ(endpoints[1].host, "127.0.0.1:5000");
  EXPECT_EQ(endpoints[1].BaseUrl(), "http://127.0.0.1:5000/v2/");
  EXPECT_EQ(endpoints[1].config.username, "u");

  // docker.io's server is registry-1.docker.io, over https whatever the flags say.
  endpoints = ResolveEndpoints(options, "docker.io");
  EXPECT_EQ(endpoints.back().BaseUrl(), "https://registry-1.docker.io/v2/");

  // Without any hosts dir: the host alone.
  endpoints = ResolveEndpoints(RegistryClientOptions(), "ghcr.io");
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].BaseUrl(), "https://ghcr.io/v2/");
}

TEST_F(HostsConfigTest, HostDirectoryNamesAsContainerd) {
  EXPECT_THAT(HostDirNames("127.0.0.1:5000"),
              ElementsAre("127.0.0.1_5000_", "127.0.0.1:5000", "_default"));
  EXPECT_THAT(HostDirNames("ghcr.io"), ElementsAre("ghcr.io", "_default"));

  // The first that exists wins; _default only for hosts without their own.
  HostDir("a.example");
  Write(dir_.Join("a.example/hosts.toml"), "server = \"https://a-server\"\n");
  HostDir("_default");
  Write(dir_.Join("_default/hosts.toml"), "server = \"https://fallback\"\n");
  RegistryClientOptions options;
  options.host_dirs = *LoadHostsDir(dir_.path());
  EXPECT_EQ(ResolveEndpoints(options, "a.example").back().host, "a-server");
  EXPECT_EQ(ResolveEndpoints(options, "b.example").back().host, "fallback");
}

TEST_F(HostsConfigTest, DockerCertificateFilesWithoutHostsToml) {
  std::string dir = HostDir("secure:443");
  Write(dir + "/ca.crt", "LEGACY-CA\n");
  Write(dir + "/me.cert", "CERT");
  Write(dir + "/me.key", "KEY");
  absl::StatusOr<std::vector<RegistryEndpoint>> endpoints = LoadHostDir(dir);
  ASSERT_TRUE(endpoints.ok()) << endpoints.status();
  ASSERT_EQ(endpoints->size(), 1u);
  EXPECT_TRUE((*endpoints)[0].host.empty());
  EXPECT_EQ((*endpoints)[0].config.ca_pem, "LEGACY-CA\n\n");
  EXPECT_EQ((*endpoints)[0].config.client_cert, dir + "/me.cert");
  EXPECT_EQ((*endpoints)[0].config.client_key, dir + "/me.key");

  // A client certificate without its key is refused, naming the key.
  Write(dir + "/other.cert", "CERT");
  ::unlink((dir + "/me.key").c_str());
  endpoints = LoadHostDir(dir);
  EXPECT_EQ(endpoints.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(endpoints.status().message(), HasSubstr("me.key"));
}

TEST_F(HostsConfigTest, MalformedFilesNameTheFileLineAndKey) {
  std::string dir = HostDir("bad");
  const std::string file = dir + "/hosts.toml";
  struct Case {
    std::string text;
    std::string want;  // in the message, after the file name
  };
  const std::vector<Case> cases = {
      {"server = \"https://x\"\n[host.\"http://m\"\ncapabilities = [\"pull\"]\n", ":2:"},
      {"\n[host.\"http://m\"]\ncapabilities = [\"pull\", \"fly\"]\n",
       ":3: key \"capabilities\": unknown capability \"fly\""},
      {"skip_verify = \"yes\"\n", ":1: key \"skip_verify\": expected true or false"},
      {"[host.\"http://m\"]\n  ca = 7\n", ":2: key \"ca\": expected a string"},
      {"[host.\"http://m\"]\n  client = [[\"a\"]]\n",
       ":2: key \"client\": expected a [certificate"},
      {"\n\nmirrors = [\"x\"]\n", ":3: key \"mirrors\": unknown key"},
      {"[host.\"ftp://m\"]\n", ":1: key \"host.\"ftp://m\"\": only http:// and https://"},
      {"[host.\"http://m\"]\n  header = { X-A = 1 }\n",
       ":2: key \"header.X-A\": expected a string"},
  };
  for (const Case& c : cases) {
    Write(file, c.text);
    absl::StatusOr<std::map<std::string, std::vector<RegistryEndpoint>>> dirs =
        LoadHostsDir(dir_.path());
    ASSERT_FALSE(dirs.ok()) << c.text;
    EXPECT_EQ(dirs.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(dirs.status().message()), HasSubstr(file + c.want)) << c.text;
  }

  // A CA file that is not there: NotFound naming it.
  Write(file, "[host.\"https://m\"]\n  ca = \"missing.pem\"\n");
  absl::StatusOr<std::vector<RegistryEndpoint>> endpoints = LoadHostDir(dir);
  EXPECT_EQ(endpoints.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(endpoints.status().message()), HasSubstr(dir + "/missing.pem"));
}

TEST_F(HostsConfigTest, MissingHostsDirIsEmpty) {
  absl::StatusOr<std::map<std::string, std::vector<RegistryEndpoint>>> dirs =
      LoadHostsDir(dir_.Join("none"));
  ASSERT_TRUE(dirs.ok()) << dirs.status();
  EXPECT_TRUE(dirs->empty());
}

}  // namespace
}  // namespace berth::images
