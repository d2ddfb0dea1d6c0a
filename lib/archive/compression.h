#pragma once

// Compressed layer streams, shared by snapshotd (apply, diff) and imaged (pull, push, import):
// the compression of a layer (from its media type and its magic
// bytes), a streaming decompressor that also digests what it produces (the layer's
// "uncompressed digest", its diff ID), and a streaming compressor for writing layers.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/byte_stream.h"
#include "lib/base/digest.h"

namespace berth::archive {

enum class Compression { kNone, kGzip, kZstd };
absl::string_view CompressionName(Compression c);

// Layer media types: OCI's application/vnd.oci.image.layer.v1.tar[+gzip|+zstd] and their
// ".nondistributable." variants, Docker's application/vnd.docker.image.rootfs.diff.tar[.gzip]
// and the ".foreign." variants. Anything else (encrypted layers included) is InvalidArgument.
// An empty media type is accepted as "tell by the magic bytes" (kNone here).
absl::StatusOr<Compression> CompressionOfMediaType(absl::string_view media_type);
// The media type of the same layer uncompressed (suffix dropped; Docker's ".tar.gzip" becomes
// ".tar"). Empty stays empty: the caller picks a default.
std::string UncompressedMediaType(absl::string_view media_type);
// The compression the first bytes of a stream announce (gzip 1f 8b, zstd 28 b5 2f fd).
Compression DetectCompression(absl::string_view head);

// Decompresses `in` (the compression is told by the magic bytes; a media type that claims
// one compression while the bytes say another is trusted less than the bytes) and computes the
// sha256 of the output. Truncated or corrupt compressed data is DataLoss. Reads `in` in
// 1 MiB chunks. `in` must outlive this object.
class DecompressingSource : public ByteSource {
 public:
  static absl::StatusOr<std::unique_ptr<DecompressingSource>> Create(ByteSource& in);
  ~DecompressingSource() override;

  absl::StatusOr<size_t> Read(char* buf, size_t size) override;

  Compression compression() const { return compression_; }
  // Of the output produced so far (the whole layer once Read returned 0).
  Digest UncompressedDigest() const;
  int64_t uncompressed_size() const { return produced_; }
  int64_t compressed_size() const { return consumed_; }

 private:
  DecompressingSource(ByteSource& in, Compression compression);
  absl::StatusOr<size_t> Fill();
  absl::StatusOr<size_t> ReadRaw(char* buf, size_t size);
  absl::StatusOr<size_t> ReadGzip(char* buf, size_t size);
  absl::StatusOr<size_t> ReadZstd(char* buf, size_t size);

  ByteSource& in_;
  Compression compression_;
  std::unique_ptr<char[]> in_buf_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  bool in_eof_ = false;
  bool stream_end_ = false;  // the current compressed frame/member is complete
  void* inflate_ = nullptr;  // ISA-L's inflate_state*
  void* zstd_ = nullptr;     // ZSTD_DStream*
  std::unique_ptr<Digester> digester_;
  int64_t produced_ = 0;
  int64_t consumed_ = 0;
};

// Compresses into `out` (kNone passes through). Close() writes the trailer and closes `out`.
// `level` is the codec's level (-1: its default).
absl::StatusOr<std::unique_ptr<ByteSink>> NewCompressingSink(ByteSink& out,
                                                             Compression compression,
                                                             int level = -1);

}  // namespace berth::archive
