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

TEST(RegistryEndpointsTest, PullOnlyMirrorWithOverridePathAndHeaderThenTheServer) {
  testing::TempDir dir;
  TestImage image = MakeImage(dir);
  Registry registry(dir.path());
  ASSERT_TRUE(registry.Start().ok()) << registry.ReadLog();
  ASSERT_TRUE(registry.Push(image.layout, kTag, kRepo).ok());
  HttpTestServer mirror([](const HttpTestRequest&) {
    return HttpText(404, {"Content-Type: application/json"},
                    R"({"errors":[{"code":"BLOB_UNKNOWN","message":"not on this mirror"}]})");
  });

  absl::StatusOr<std::vector<images::RegistryEndpoint>> endpoints = images::ParseHostsToml(
      absl::StrCat("server = \"http://", registry.host(), "\"\n[host.\"", mirror.url(),
                   "/api\"]\n  capabilities = [\"pull\"]\n  override_path = true\n"
                   "  header = { X-Tenant = \"berth\" }\n"),
      dir.path(), "hosts.toml");
  ASSERT_TRUE(endpoints.ok()) << endpoints.status();
  RegistryClientOptions options;
  options.initial_backoff = absl::Milliseconds(10);
  options.host_dirs[registry.host()] = *endpoints;
  std::unique_ptr<RegistryClient> client = RegistryClient::Create(std::move(options));
  ExpectPullable(*client, registry.host(), image);

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

}  // namespace
}  // namespace berth::integration
