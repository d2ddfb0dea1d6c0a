// The registry client's endpoints from hosts.toml (lib/images/hosts_config.h), seen from the
// endpoint's side: a scripted server stands in for a mirror with only the `pull` capability,
// `override_path` and a `header`; the real docker-registry behind it is the server. The mirror
// is never asked to resolve a tag, is asked for manifests by digest and blobs under its own
// path (no /v2) with the header, answers 404, and every read completes from the server.

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "integration/http_test_server.h"
#include "integration/registry_test_util.h"
#include "lib/images/hosts_config.h"

namespace berth::integration {
namespace {

// The test image in a real docker-registry; clients whose host dir for it is a hosts.toml.
class RegistryEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.Start().ok()) << registry_.ReadLog();
    ASSERT_TRUE(registry_.Push(image_.layout, kTag, kRepo).ok());
  }

  std::unique_ptr<RegistryClient> ClientWith(const std::string& hosts_toml,
                                             RegistryClientOptions options = {}) {
    absl::StatusOr<std::vector<images::RegistryEndpoint>> endpoints =
        images::ParseHostsToml(hosts_toml, dir_.path(), "hosts.toml");
    EXPECT_TRUE(endpoints.ok()) << endpoints.status();
    options.initial_backoff = absl::Milliseconds(1);
    options.host_dirs[registry_.host()] = endpoints.ok() ? *endpoints
                                                         : std::vector<images::RegistryEndpoint>();
    return RegistryClient::Create(std::move(options));
  }

  testing::TempDir dir_;
  TestImage image_ = MakeImage(dir_);
  Registry registry_{dir_.path()};
};

TEST_F(RegistryEndpointsTest, PullOnlyMirrorWithOverridePathAndHeaderThenTheServer) {
  HttpTestServer mirror([](const HttpTestRequest&) {
    return HttpText(404, {"Content-Type: application/json"},
                    R"({"errors":[{"code":"BLOB_UNKNOWN","message":"not on this mirror"}]})");
  });

  std::unique_ptr<RegistryClient> client = ClientWith(
      absl::StrCat("server = \"http://", registry_.host(), "\"\n[host.\"", mirror.url(),
                   "/api\"]\n  capabilities = [\"pull\"]\n  override_path = true\n"
                   "  header = { X-Tenant = \"berth\" }\n"));
  ExpectPullable(*client, registry_.host(), image_);

  std::vector<HttpTestRequest> requests = mirror.requests();
  ASSERT_FALSE(requests.empty());
  bool manifest_by_digest = false;
  bool blob = false;
  for (const HttpTestRequest& request : requests) {
    EXPECT_TRUE(absl::StartsWith(request.path, absl::StrCat("/api/", kRepo, "/")))
        << request.path;
    EXPECT_FALSE(absl::StrContains(request.path, "/manifests/v1")) << request.path;
    auto tenant = request.headers.find("x-tenant");
    EXPECT_TRUE(tenant != request.headers.end() && tenant->second == "berth") << request.path;
    manifest_by_digest = manifest_by_digest ||
                         absl::StrContains(request.path, "/manifests/sha256:");
    blob = blob || absl::StrContains(request.path, "/blobs/sha256:");
  }
  EXPECT_TRUE(manifest_by_digest);
  EXPECT_TRUE(blob);
}

// A mirror that keeps answering 500 is retried (max_attempts per request), then passed over.
TEST_F(RegistryEndpointsTest, MirrorAnswering500AfterRetriesFallsBackToTheServer) {
  HttpTestServer mirror([](const HttpTestRequest&) { return HttpText(500, {}, "broken"); });
  RegistryClientOptions options;
  options.max_attempts = 2;
  std::unique_ptr<RegistryClient> client = ClientWith(
      absl::StrCat("server = \"http://", registry_.host(), "\"\n[host.\"", mirror.url(), "\"]\n"),
      options);
  absl::StatusOr<Descriptor> desc = client->Resolve(Ctx(), Ref(registry_.host(), ":v1"));
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_EQ(desc->digest.ToString(), image_.manifest_digest);
  // Resolve's HEAD twice (two attempts), its GET twice, then the server.
  std::vector<std::string> methods;
  for (const HttpTestRequest& request : mirror.requests()) {
    methods.push_back(request.method);
  }
  EXPECT_EQ(methods, (std::vector<std::string>{"HEAD", "HEAD", "GET", "GET"}));
}

}  // namespace
}  // namespace berth::integration
