#pragma once

// What the registry client's integration tests share: the test image (made by umoci, read back
// from its layout), references into it, clients for one host, and a full pull checked byte for
// byte against the layout.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "integration/harness.h"
#include "lib/images/registry_client.h"

namespace berth::integration {

using images::Descriptor;
using images::Reference;
using images::RegistryClient;
using images::RegistryClientOptions;
using images::RegistryHostConfig;

inline constexpr char kRepo[] = "test/hello";
inline constexpr char kTag[] = "v1";
inline constexpr char kUser[] = "berth";
inline constexpr char kPassword[] = "s3cret";

inline Context Ctx() { return Context().WithTimeout(absl::Seconds(60)); }

inline Reference Ref(const std::string& host, const std::string& object) {
  absl::StatusOr<Reference> ref = Reference::Parse(absl::StrCat(host, "/", kRepo, object));
  EXPECT_TRUE(ref.ok()) << ref.status();
  return *ref;
}

inline std::unique_ptr<RegistryClient> Client(const std::string& host, RegistryHostConfig config) {
  RegistryClientOptions options;
  options.initial_backoff = absl::Milliseconds(10);
  options.hosts[host] = std::move(config);
  return RegistryClient::Create(std::move(options));
}

// A client that fetches blobs over `chunk_size` bytes as `parallel` Range requests at a time.
inline std::unique_ptr<RegistryClient> ChunkedClient(const std::string& host,
                                                     RegistryHostConfig config,
                                                     int64_t chunk_size, int parallel = 4) {
  RegistryClientOptions options;
  options.initial_backoff = absl::Milliseconds(10);
  options.hosts[host] = std::move(config);
  options.blob_chunk_size = chunk_size;
  options.blob_parallel_chunks = parallel;
  return RegistryClient::Create(std::move(options));
}

inline RegistryHostConfig PlainHttp() {
  RegistryHostConfig config;
  config.plain_http = true;
  return config;
}

// An htpasswd file at `path` with kUser:kPassword, bcrypt (the registry accepts nothing else)
// at cost 4 to keep each request fast.
inline void WriteHtpasswd(const std::string& path) {
  int code = 0;
  std::string out = testing::RunCommand(
      std::vector<std::string>{
          "python3", "-W", "ignore", "-c",
          "import crypt, sys; open(sys.argv[1], 'w').write(sys.argv[2] + ':' + "
          "crypt.crypt(sys.argv[3], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)) + '\\n')",
          path, kUser, kPassword},
      &code);
  ASSERT_EQ(code, 0) << out;
}

// The test image as an OCI layout, and what its index names.
struct TestImage {
  std::string layout;
  std::string manifest_digest;

  std::string Blob(const std::string& digest) const {
    absl::StatusOr<std::string> data =
        ReadFile(absl::StrCat(layout, "/blobs/sha256/", digest.substr(7)));
    EXPECT_TRUE(data.ok()) << data.status();
    return data.ok() ? *data : std::string();
  }
};

inline TestImage MakeImage(const testing::TempDir& dir) {
  TestImage image;
  image.layout = dir.Join("layout");
  absl::Status status = MakeTestImage(image.layout, kTag);
  EXPECT_TRUE(status.ok()) << status;
  absl::StatusOr<std::string> index = ReadFile(image.layout + "/index.json");
  EXPECT_TRUE(index.ok()) << index.status();
  image.manifest_digest = nlohmann::json::parse(*index)["manifests"][0]["digest"];
  return image;
}

// Resolves the tag and the digest, fetches the manifest, config and every layer, and checks
// each against the bytes umoci wrote.
inline void ExpectPullable(RegistryClient& client, const std::string& host, const TestImage& image) {
  absl::StatusOr<Descriptor> by_tag = client.Resolve(Ctx(), Ref(host, ":v1"));
  ASSERT_TRUE(by_tag.ok()) << by_tag.status();
  EXPECT_EQ(by_tag->digest.ToString(), image.manifest_digest);
  EXPECT_EQ(by_tag->media_type, images::kOciManifest);
  Reference by_digest_ref = Ref(host, "@" + image.manifest_digest);
  absl::StatusOr<Descriptor> by_digest = client.Resolve(Ctx(), by_digest_ref);
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->digest, by_tag->digest);
  EXPECT_EQ(by_digest->size, by_tag->size);

  absl::StatusOr<RegistryClient::Document> doc =
      client.FetchManifest(Ctx(), by_digest_ref, *by_tag);
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_TRUE(doc->manifest.has_value());
  EXPECT_EQ(doc->raw, image.Blob(image.manifest_digest));
  std::vector<oci::Descriptor> blobs = {doc->manifest->config};
  for (const images::Descriptor& layer : doc->manifest->layers) {
    blobs.push_back(layer);
  }
  ASSERT_GE(blobs.size(), 2u);
  for (const oci::Descriptor& blob : blobs) {
    StringSink sink;
    absl::Status status = client.FetchBlob(Ctx(), by_digest_ref, blob, &sink);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(Sha256Digest(sink.data()), blob.digest.ToString());
    EXPECT_EQ(sink.data(), image.Blob(blob.digest.ToString()));
  }
}

// The largest layer's descriptor (the one with /hello, ~300 KiB: many writes), read from the
// layout.
inline oci::Descriptor LargestLayer(const TestImage& image) {
  nlohmann::json manifest = nlohmann::json::parse(image.Blob(image.manifest_digest));
  oci::Descriptor desc;
  for (const nlohmann::json& layer : manifest["layers"]) {
    if (layer["size"].get<int64_t>() > desc.size) {
      desc.media_type = layer["mediaType"];
      desc.digest = *Digest::Parse(layer["digest"].get<std::string>());
      desc.size = layer["size"];
    }
  }
  return desc;
}

// The test image's config and layers, from the layout.
inline std::vector<oci::Descriptor> Blobs(const TestImage& image) {
  nlohmann::json manifest = nlohmann::json::parse(image.Blob(image.manifest_digest));
  std::vector<nlohmann::json> all = {manifest["config"]};
  all.insert(all.end(), manifest["layers"].begin(), manifest["layers"].end());
  std::vector<oci::Descriptor> blobs;
  for (const nlohmann::json& desc : all) {
    blobs.push_back({desc["mediaType"], *Digest::Parse(desc["digest"].get<std::string>()),
                     desc["size"], {}});
  }
  return blobs;
}

// An upload of `desc` from the layout; *sent follows the bytes sent.
inline images::BlobUpload FromLayout(const TestImage& image, const oci::Descriptor& desc,
                                     int64_t* sent) {
  images::BlobUpload upload;
  std::string data = image.Blob(desc.digest.ToString());
  upload.open = [data](int64_t offset) -> absl::StatusOr<std::unique_ptr<ByteSource>> {
    return std::make_unique<StringSource>(data.substr(static_cast<size_t>(offset)));
  };
  upload.progress = [sent](int64_t n) { *sent = n; };
  return upload;
}

// The layout's manifest as a descriptor.
inline Descriptor ManifestDescriptor(const TestImage& image) {
  Descriptor desc;
  desc.media_type = std::string(images::kOciManifest);
  desc.digest = *Digest::Parse(image.manifest_digest);
  desc.size = static_cast<int64_t>(image.Blob(image.manifest_digest).size());
  return desc;
}

}  // namespace berth::integration
