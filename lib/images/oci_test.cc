#include "lib/images/oci.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::images {
namespace {

using ::testing::HasSubstr;

const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');
const std::string kDigestC = "sha256:" + std::string(64, 'c');

std::string ManifestJson(const std::string& extra = "") {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
         R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
         kDigestA + R"(","size":123},)" +
         R"("layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
         kDigestB + R"(","size":4567,"annotations":{"k":"v"}}])" + extra + "}";
}

TEST(OciTest, ParsesAManifestAndWritesItBack) {
  absl::StatusOr<Manifest> m = ParseManifest(ManifestJson(), kOciManifest);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->media_type, kOciManifest);
  EXPECT_EQ(m->config.digest.ToString(), kDigestA);
  EXPECT_EQ(m->config.size, 123);
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].size, 4567);
  EXPECT_EQ(m->layers[0].annotations.at("k"), "v");
  EXPECT_TRUE(IsLayerType(m->layers[0].media_type));

  absl::StatusOr<Manifest> again = ParseManifest(ToJson(*m), "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->layers[0].digest, m->layers[0].digest);
  EXPECT_EQ(ToJson(*again), ToJson(*m));
}

TEST(OciTest, ParsesADockerManifestListWithPlatforms) {
  std::string list =
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",)"
      R"("manifests":[)"
      R"({"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" +
      kDigestA + R"(","size":10,"platform":{"os":"linux","architecture":"amd64"}},)" +
      R"({"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" +
      kDigestB + R"(","size":11,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]})";
  absl::StatusOr<Index> index = ParseIndex(list, "");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->media_type, kDockerManifestList);
  ASSERT_EQ(index->manifests.size(), 2u);
  ASSERT_TRUE(index->manifests[1].platform.has_value());
  EXPECT_EQ(FormatPlatform(*index->manifests[1].platform), "linux/arm/v7");
  EXPECT_TRUE(IsManifestType(index->manifests[0].media_type));
}

TEST(OciTest, RefusesAmbiguousDocuments) {
  // CVE-2021-41190: a manifest that also lists manifests, an index that also has layers.
  absl::StatusOr<Manifest> m =
      ParseManifest(ManifestJson(R"(,"manifests":[])"), kOciManifest);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("CVE-2021-41190"));

  std::string index = R"({"schemaVersion":2,"manifests":[],"layers":[]})";
  absl::StatusOr<Index> i = ParseIndex(index, kOciIndex);
  EXPECT_EQ(i.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(i.status().message(), HasSubstr("ambiguous"));
}

TEST(OciTest, RefusesBadDocumentsNamingTheField) {
  struct Case {
    std::string data;
    std::string served;
    std::string why;
  };
  std::string big = ManifestJson(R"(,"annotations":{"pad":")" + std::string(4 << 20, 'x') + "\"}");
  for (const Case& c : std::vector<Case>{
           {big, std::string(kOciManifest), "over the limit"},
           {"not json", std::string(kOciManifest), "not valid JSON"},
           {"[]", std::string(kOciManifest), "not a JSON object"},
           {ManifestJson(), std::string(kOciIndex), "was served as"},
           {ManifestJson(), "text/plain", "was served as"},
           {R"({"schemaVersion":1,"config":{},"layers":[]})", "", "schemaVersion"},
           {R"({"schemaVersion":2,"layers":[]})", "", "\"config\" is missing"},
           {R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":")" + kDigestA +
                R"(","size":-1},"layers":[]})",
            "", "size"},
           {R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:xyz","size":1},"layers":[]})",
            "", "config"},
           {R"({"schemaVersion":2,"config":{"mediaType":"not a type","digest":")" + kDigestA +
                R"(","size":1},"layers":[]})",
            "", "media type"},
           {R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":")" + kDigestA +
                R"(","size":1},"layers":{}})",
            "", "\"layers\" must be an array"},
           {R"({"schemaVersion":2,"mediaType":"application/vnd.example+json","config":{"mediaType":"a/b","digest":")" +
                kDigestA + R"(","size":1},"layers":[]})",
            "", "unsupported media type"},
       }) {
    absl::StatusOr<Manifest> m = ParseManifest(c.data, c.served);
    ASSERT_FALSE(m.ok()) << c.data.substr(0, 200);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(m.status().message(), HasSubstr(c.why)) << c.data.substr(0, 200);
  }
}

TEST(OciTest, ParsesAnImageConfigsRuntimeFields) {
  std::string config = R"({"architecture":"amd64","os":"linux",)"
                       R"("config":{"User":"app:app","Env":["PATH=/bin","A=b"],)"
                       R"("Entrypoint":["/entry"],"Cmd":["run","--x"],"WorkingDir":"/srv",)"
                       R"("Labels":{"l":"v"},"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGINT"},)"
                       R"("rootfs":{"type":"layers","diff_ids":[")" +
                       kDigestC + R"("]}})";
  absl::StatusOr<ImageConfig> c = ParseImageConfig(config);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "app:app");
  EXPECT_THAT(c->env, ::testing::ElementsAre("PATH=/bin", "A=b"));
  EXPECT_THAT(c->entrypoint, ::testing::ElementsAre("/entry"));
  EXPECT_THAT(c->cmd, ::testing::ElementsAre("run", "--x"));
  EXPECT_EQ(c->working_dir, "/srv");
  EXPECT_EQ(c->stop_signal, "SIGINT");
  EXPECT_THAT(c->exposed_ports, ::testing::ElementsAre("80/tcp"));
  EXPECT_THAT(c->diff_ids, ::testing::ElementsAre(kDigestC));

  EXPECT_THAT(ParseImageConfig(R"({"rootfs":{"type":"other"}})").status().message(),
              HasSubstr("rootfs.type"));
  EXPECT_THAT(ParseImageConfig(R"({"config":{"Env":"PATH=/bin"},"rootfs":{"type":"layers"}})")
                  .status()
                  .message(),
              HasSubstr("\"Env\" must be an array"));
  EXPECT_THAT(
      ParseImageConfig(R"({"rootfs":{"type":"layers","diff_ids":["sha256:nope"]}})").status().message(),
      HasSubstr("diff_ids"));
}

TEST(OciTest, MatchesPlatformsAsContainerdDoes) {
  auto p = [](const char* text) { return *ParsePlatform(text); };
  EXPECT_EQ(MatchPlatform(p("linux/amd64"), p("linux/amd64")), 0);
  EXPECT_EQ(MatchPlatform(p("linux/amd64"), p("linux/arm64")), std::nullopt);
  EXPECT_EQ(MatchPlatform(p("linux/amd64"), p("windows/amd64")), std::nullopt);
  // arm64 means arm64/v8.
  EXPECT_EQ(MatchPlatform(p("linux/arm64"), p("linux/arm64/v8")), 0);
  // An armv7 host runs v6 and v5, preferring the closer; never v8.
  Platform v7 = p("linux/arm/v7");
  ASSERT_TRUE(MatchPlatform(v7, p("linux/arm/v6")).has_value());
  ASSERT_TRUE(MatchPlatform(v7, p("linux/arm/v5")).has_value());
  EXPECT_LT(*MatchPlatform(v7, p("linux/arm/v7")), *MatchPlatform(v7, p("linux/arm/v6")));
  EXPECT_LT(*MatchPlatform(v7, p("linux/arm/v6")), *MatchPlatform(v7, p("linux/arm/v5")));
  EXPECT_EQ(MatchPlatform(p("linux/arm/v6"), p("linux/arm/v7")), std::nullopt);
  EXPECT_FALSE(ParsePlatform("linux").ok());
  EXPECT_FALSE(ParsePlatform("linux//v7").ok());
  EXPECT_TRUE(MatchPlatform(HostPlatform(), HostPlatform()).has_value());
  EXPECT_EQ(HostPlatform().os, "linux");
}

}  // namespace
}  // namespace berth::images
