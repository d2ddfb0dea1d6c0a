// The layer streams: compress and decompress round trips (concatenated members and frames,
// truncation, corruption), gzip levels, and the media types of layers.

#include "lib/archive/compression.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace berth::archive {
namespace {

TEST(StreamTest, GzipAndZstdRoundTrip) {
  std::string data;
  for (int i = 0; i < 300000; ++i) {
    data += absl::StrCat(i, ",");
  }
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    StringSink compressed;
    auto sink = NewCompressingSink(compressed, c);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->Write(data).ok());
    ASSERT_TRUE((*sink)->Close().ok());
    // Two gzip members / zstd frames back to back are one stream.
    std::string twice = compressed.data() + compressed.data();
    StringSource source(c == Compression::kNone ? data + data : twice);
    auto dec = DecompressingSource::Create(source);
    ASSERT_TRUE(dec.ok());
    EXPECT_EQ((*dec)->compression(), c);
    std::string out;
    char buf[7000];
    while (true) {
      auto n = (*dec)->Read(buf, sizeof(buf));
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) {
        break;
      }
      out.append(buf, *n);
    }
    EXPECT_EQ(out, data + data);
    EXPECT_EQ((*dec)->UncompressedDigest(), Sha256Of(data + data));
    if (c != Compression::kNone) {
      StringSource cut(compressed.data().substr(0, compressed.data().size() / 2));
      auto dec2 = DecompressingSource::Create(cut);
      ASSERT_TRUE(dec2.ok());
      absl::Status status;
      while (true) {
        auto n = (*dec2)->Read(buf, sizeof(buf));
        if (!n.ok()) {
          status = n.status();
          break;
        }
        if (*n == 0) {
          break;
        }
      }
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << CompressionName(c);
    }
  }
}

// Reads `source` through a DecompressingSource to the end: the bytes, or the first error.
absl::StatusOr<std::string> DecompressAll(std::string compressed) {
  StringSource source(std::move(compressed));
  auto dec = DecompressingSource::Create(source);
  if (!dec.ok()) {
    return dec.status();
  }
  std::string out;
  std::vector<char> buf(1 << 16);
  while (true) {
    auto n = (*dec)->Read(buf.data(), buf.size());
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return out;
    }
    out.append(buf.data(), *n);
  }
}

// gzip at the levels layers are made with (stored blocks at 0, fixed and dynamic Huffman
// blocks above), over incompressible and text data, decodes to the same bytes; a flipped bit
// in the data, the CRC or the length of the trailer, or a broken header is DataLoss.
TEST(StreamTest, GzipLevelsAndCorruption) {
  std::string data;
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 300000; ++i) {  // xorshift: incompressible
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data.push_back(static_cast<char>(x));
  }
  for (int i = 0; i < 100000; ++i) {
    data += absl::StrCat("line ", i % 977, " of some text\n");
  }
  for (int level : {0, 1, 6, 9}) {
    StringSink compressed;
    auto sink = NewCompressingSink(compressed, Compression::kGzip, level);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->Write(data).ok());
    ASSERT_TRUE((*sink)->Close().ok());
    const std::string& gz = compressed.data();
    absl::StatusOr<std::string> out = DecompressAll(gz);
    ASSERT_TRUE(out.ok()) << "level " << level << ": " << out.status();
    EXPECT_TRUE(*out == data) << "level " << level;

    for (size_t at : {gz.size() / 2, gz.size() - 8, gz.size() - 2}) {  // data, CRC, length
      std::string bad = gz;
      bad[at] = static_cast<char>(bad[at] ^ 0x10);
      EXPECT_EQ(DecompressAll(bad).status().code(), absl::StatusCode::kDataLoss)
          << "level " << level << ", byte " << at << " of " << gz.size();
    }
    std::string bad_method = gz;
    bad_method[2] = 7;  // not deflate
    EXPECT_EQ(DecompressAll(bad_method).status().code(), absl::StatusCode::kDataLoss);
  }
}

TEST(StreamTest, MediaTypes) {
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar"), Compression::kNone);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::kZstd);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.docker.image.rootfs.diff.tar"),
            Compression::kNone);
  EXPECT_FALSE(
      CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+gzip+encrypted").ok());
  EXPECT_FALSE(CompressionOfMediaType("application/json").ok());
  EXPECT_EQ(UncompressedMediaType("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            "application/vnd.docker.image.rootfs.diff.tar");
  EXPECT_EQ(UncompressedMediaType("application/vnd.oci.image.layer.v1.tar+zstd"),
            "application/vnd.oci.image.layer.v1.tar");
}

}  // namespace
}  // namespace berth::archive
