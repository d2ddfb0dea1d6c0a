// TarReader and TarWriter without a daemon: names normalised or refused, what the writer writes
// read back the same (plain and gzip), limits checked from the headers.

#include "lib/images/tar_stream.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "lib/archive/compression.h"

namespace berth::images {
namespace {

TEST(NormaliseEntryPath, DropsDotsAndSlashesAndRefusesEscapes) {
  EXPECT_EQ(*NormaliseEntryPath("./blobs//sha256/./ab"), "blobs/sha256/ab");
  EXPECT_EQ(*NormaliseEntryPath("blobs/"), "blobs");
  for (const char* bad : {"/etc/passwd", "../x", "blobs/../../x", "a/..", ".", "./", ""}) {
    absl::StatusOr<std::string> path = NormaliseEntryPath(bad);
    EXPECT_EQ(path.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

std::string Written(bool gzip) {
  StringSink plain;
  std::unique_ptr<ByteSink> compressing;
  ByteSink* out = &plain;
  if (gzip) {
    compressing = *archive::NewCompressingSink(plain, archive::Compression::kGzip);
    out = compressing.get();
  }
  std::unique_ptr<TarWriter> writer = *TarWriter::Open(*out);
  EXPECT_TRUE(writer->AddFile("oci-layout", "{}").ok());
  EXPECT_TRUE(writer->AddDirectory("blobs").ok());
  StringSource big(std::string(3 << 20, 'b'));
  EXPECT_TRUE(writer->AddFile("blobs/big", 3 << 20, big).ok());
  EXPECT_TRUE(writer->Close().ok());
  return plain.data();
}

TEST(TarStream, WhatTheWriterWritesReadsBackPlainAndGzipped) {
  for (bool gzip : {false, true}) {
    StringSource source(Written(gzip));
    std::unique_ptr<TarReader> reader = *TarReader::Open(source, TarLimits{});
    std::optional<TarEntry> e = *reader->Next();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->path, "oci-layout");
    EXPECT_EQ(e->size, 2);
    e = *reader->Next();  // skips the data left
    EXPECT_EQ(e->type, TarEntry::Type::kDirectory);
    e = *reader->Next();
    EXPECT_EQ(e->path, "blobs/big");
    std::string data;
    char buf[65536];
    for (size_t n; (n = *reader->Read(buf, sizeof(buf))) > 0;) {
      data.append(buf, n);
    }
    EXPECT_EQ(data, std::string(3 << 20, 'b'));
    EXPECT_FALSE((*reader->Next()).has_value());
  }
}

TEST(TarStream, LimitsAreCheckedAgainstTheHeaders) {
  {
    StringSource source(Written(false));
    std::unique_ptr<TarReader> reader = *TarReader::Open(source, TarLimits{2, 1 << 30});
    ASSERT_TRUE(reader->Next().ok());
    ASSERT_TRUE(reader->Next().ok());
    absl::StatusOr<std::optional<TarEntry>> third = reader->Next();
    EXPECT_EQ(third.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(third.status().message().find("\"blobs/big\": more than 2 entries"),
              std::string::npos)
        << third.status();
  }
  StringSource source(Written(false));
  std::unique_ptr<TarReader> reader = *TarReader::Open(source, TarLimits{100, 1 << 20});
  ASSERT_TRUE(reader->Next().ok());
  ASSERT_TRUE(reader->Next().ok());
  absl::StatusOr<std::optional<TarEntry>> big = reader->Next();
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument) << big.status();
}

TEST(TarStream, ATruncatedArchiveIsAnError) {
  std::string data = Written(false);
  StringSource source(data.substr(0, 2 << 20));
  std::unique_ptr<TarReader> reader = *TarReader::Open(source, TarLimits{});
  absl::Status status;
  while (status.ok()) {
    absl::StatusOr<std::optional<TarEntry>> e = reader->Next();
    if (!e.ok()) {
      status = e.status();
      break;
    }
    ASSERT_TRUE(e->has_value()) << "the archive seemed complete";
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

}  // namespace
}  // namespace berth::images
