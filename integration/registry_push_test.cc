// The registry client's write side against a real docker-registry: the test image's blobs and
// manifest pushed from its OCI layout (monolithic and chunked) are pulled back byte for byte;
// HasBlob sees them; a manifest whose blobs are missing is refused. Token auth for pushes is in
// registry_token_test.cc.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "integration/registry_test_util.h"

namespace berth::integration {
namespace {

// Pushes every blob and the manifest (as kTag) of `image` to `host`'s kRepo.
void PushImage(RegistryClient& client, const std::string& host, const TestImage& image) {
  Reference ref = Ref(host, ":v1");
  for (const oci::Descriptor& blob : Blobs(image)) {
    absl::StatusOr<bool> has = client.HasBlob(Ctx(), ref, blob);
    ASSERT_TRUE(has.ok()) << has.status();
    EXPECT_FALSE(*has);
    int64_t sent = 0;
    absl::StatusOr<images::BlobPushResult> pushed =
        client.PushBlob(Ctx(), ref, blob, FromLayout(image, blob, &sent));
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    EXPECT_EQ(*pushed, images::BlobPushResult::kUploaded);
    EXPECT_EQ(sent, blob.size);
    EXPECT_TRUE(*client.HasBlob(Ctx(), ref, blob));
  }
  absl::Status put = client.PushManifest(Ctx(), ref, ManifestDescriptor(image),
                                         image.Blob(image.manifest_digest), kTag);
  ASSERT_TRUE(put.ok()) << put;
}

TEST(RegistryPushTest, MonolithicAndChunkedUploadsArePulledBackByteForByte) {
  testing::TempDir dir;
  TestImage image = MakeImage(dir);
  for (int64_t threshold : {int64_t{64} << 20, int64_t{50000}}) {
    testing::TempDir registry_dir;
    Registry registry(registry_dir.path());
    ASSERT_TRUE(registry.Start().ok()) << registry.ReadLog();
    RegistryClientOptions options;
    options.hosts[registry.host()] = PlainHttp();
    options.chunked_upload_threshold = threshold;
    options.upload_chunk_size = threshold;
    std::unique_ptr<RegistryClient> client = RegistryClient::Create(std::move(options));
    PushImage(*client, registry.host(), image);
    ExpectPullable(*client, registry.host(), image);
    bool patched = absl::StrContains(registry.ReadLog(), "\"PATCH /v2/test/hello/blobs/uploads/");
    EXPECT_EQ(patched, threshold == 50000) << threshold << registry.ReadLog();
  }
}

TEST(RegistryPushTest, ManifestWhoseBlobsAreMissingIsRefused) {
  testing::TempDir dir;
  TestImage image = MakeImage(dir);
  Registry registry(dir.path());
  ASSERT_TRUE(registry.Start().ok()) << registry.ReadLog();
  absl::Status put = Client(registry.host(), PlainHttp())
                         ->PushManifest(Ctx(), Ref(registry.host(), ":v1"),
                                        ManifestDescriptor(image),
                                        image.Blob(image.manifest_digest), kTag);
  EXPECT_EQ(put.code(), absl::StatusCode::kInvalidArgument) << put;
  EXPECT_TRUE(absl::StrContains(put.message(), "MANIFEST_BLOB_UNKNOWN")) << put;
}

}  // namespace
}  // namespace berth::integration
