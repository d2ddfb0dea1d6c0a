#include "lib/images/reference.h"

#include <string>

#include "gtest/gtest.h"

namespace berth::images {
namespace {

std::string Normalised(const std::string& text) {
  absl::StatusOr<Reference> ref = Reference::Parse(text);
  if (!ref.ok()) {
    return "error: " + std::string(ref.status().message());
  }
  return ref->String();
}

TEST(ReferenceTest, NormalisesAsDockerDoes) {
  EXPECT_EQ(Normalised("alpine"), "docker.io/library/alpine:latest");
  EXPECT_EQ(Normalised("alpine:3.19"), "docker.io/library/alpine:3.19");
  EXPECT_EQ(Normalised("library/alpine"), "docker.io/library/alpine:latest");
  EXPECT_EQ(Normalised("user/app:v1"), "docker.io/user/app:v1");
  EXPECT_EQ(Normalised("index.docker.io/user/app"), "docker.io/user/app:latest");
  EXPECT_EQ(Normalised("docker.io/alpine"), "docker.io/library/alpine:latest");
  EXPECT_EQ(Normalised("ghcr.io/org/team/app:1.2.3"), "ghcr.io/org/team/app:1.2.3");
  EXPECT_EQ(Normalised("localhost/app"), "localhost/app:latest");
  EXPECT_EQ(Normalised("127.0.0.1:5000/x/y:t"), "127.0.0.1:5000/x/y:t");
  EXPECT_EQ(Normalised("[::1]:5000/app"), "[::1]:5000/app:latest");
  EXPECT_EQ(Normalised("registry:5000/app"), "registry:5000/app:latest");
  // Separators inside components.
  EXPECT_EQ(Normalised("a/b.c_d__e---f"), "docker.io/a/b.c_d__e---f:latest");
}

TEST(ReferenceTest, KeepsDigestAndTagApart) {
  std::string hex(64, 'a');
  absl::StatusOr<Reference> ref = Reference::Parse("127.0.0.1:5000/app:v2@sha256:" + hex);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->domain, "127.0.0.1:5000");
  EXPECT_EQ(ref->path, "app");
  EXPECT_EQ(ref->tag, "v2");
  EXPECT_EQ(ref->digest.ToString(), "sha256:" + hex);
  EXPECT_EQ(ref->Object(), "sha256:" + hex);

  absl::StatusOr<Reference> by_digest = Reference::Parse("alpine@sha256:" + hex);
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->tag, "");  // no default tag beside a digest
  EXPECT_EQ(by_digest->String(), "docker.io/library/alpine@sha256:" + hex);

  absl::StatusOr<Reference> tagged = Reference::Parse("alpine:edge");
  ASSERT_TRUE(tagged.ok());
  EXPECT_EQ(tagged->Object(), "edge");
  EXPECT_EQ(tagged->Name(), "docker.io/library/alpine");
}

TEST(ReferenceTest, RefusesMalformedReferencesSayingWhy) {
  struct Case {
    std::string text;
    std::string why;
  };
  std::string hex(64, 'b');
  for (const Case& c : std::vector<Case>{
           {"", "empty"},
           {"Alpine", "lowercase"},
           {"docker.io/User/app", "lowercase"},
           {"app:", "tag"},
           {"app:-bad", "tag"},
           {"app:" + std::string(129, 'a'), "tag"},
           {"app@sha256:abc", "sha256"},
           {"app@md5:" + std::string(32, '0'), "algorithm"},
           {hex, "image id"},
           {"a//b", "component"},
           {"a/-b", "component"},
           {"a/b_", "component"},
           {"-host.io/app", "registry host"},
           {"host.io:port/app", "registry host"},
           {":tag", "no repository"},
           {"a/" + std::string(260, 'a'), "longer than 255"},
           {"app name", "component"},
       }) {
    absl::StatusOr<Reference> ref = Reference::Parse(c.text);
    ASSERT_FALSE(ref.ok()) << c.text << " parsed as " << ref->String();
    EXPECT_EQ(ref.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(ref.status().message().find(c.why), std::string::npos)
        << c.text << ": " << ref.status().message();
  }
}

}  // namespace
}  // namespace berth::images
