#include "lib/base/digest.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

TEST(DigestTest, ParsesValidSha256AndSha512) {
  auto d = Digest::Parse(
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->algorithm(), "sha256");
  EXPECT_EQ(d->hex().size(), 64u);
  auto e = Digest::Parse("sha512:" + std::string(128, 'a'));
  ASSERT_TRUE(e.ok()) << e.status();
}

TEST(DigestTest, RejectsMalformed) {
  for (const char* bad : {"", "sha256", "sha256:", ":abc", "md5:d41d8cd98f00b204e9800998ecf8427e",
                          "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                          "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
                          "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
                          "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}) {
    auto d = Digest::Parse(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(DigestTest, StreamingMatchesKnownVectors) {
  EXPECT_EQ(Sha256Of("").ToString(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  auto d = Digester::Sha256();
  d->Update("ab");
  EXPECT_EQ(d->Sum(), Sha256Of("ab"));  // Sum does not reset
  d->Update("c");
  EXPECT_EQ(d->Sum().ToString(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto s512 = Digester::Create("sha512");
  ASSERT_TRUE(s512.ok());
  (*s512)->Update("abc");
  EXPECT_EQ((*s512)->Sum().hex().substr(0, 16), "ddaf35a193617aba");
  EXPECT_FALSE(Digester::Create("sha1").ok());
}

}  // namespace
}  // namespace berth
