#pragma once

// Byte streams over the content store: a blob read as a stream (BlobSource), and a stream
// written into an ingest (WriterSink). With lib/archive's DecompressingSource and
// NewCompressingSink they make the layer pipelines: blob -> decompress -> tar reader (apply),
// tar writer -> compress -> content (diff), registry -> content (pull).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/content/content_store.h"

namespace berth::content {

inline constexpr size_t kStreamChunk = 1 << 20;

// Reads one committed blob front to back with Reader::ReadAt, at most `chunk` bytes a call.
// Between chunks it checks ctx.Alive(): once the caller is gone, Read returns Cancelled or
// DeadlineExceeded, so whatever consumes the stream stops within one chunk. Not thread-safe.
class BlobSource : public ByteSource {
 public:
  // NotFound if the blob is not committed in ctx.ns; FailedPrecondition if `expected_size`
  // (> 0) is not the blob's size.
  static absl::StatusOr<std::unique_ptr<BlobSource>> Open(Provider& provider, const Context& ctx,
                                                          const Digest& digest,
                                                          int64_t expected_size = 0,
                                                          size_t chunk = kStreamChunk);
  BlobSource(std::unique_ptr<Reader> reader, Context ctx, size_t chunk = kStreamChunk);

  absl::StatusOr<size_t> Read(char* buf, size_t size) override;
  // Moves the read position; no bytes are read.
  absl::StatusOr<int64_t> Skip(int64_t count) override;

  int64_t size() const { return size_; }
  int64_t offset() const { return offset_; }

 private:
  std::unique_ptr<Reader> reader_;
  const Context ctx_;
  const size_t chunk_;
  const int64_t size_;
  int64_t offset_ = 0;
};

// Writes a stream into an open ingest, in writes of `chunk` bytes (the last one shorter), and
// commits it. It counts and digests what passes through it; Commit checks, before asking the
// store, that the ingest holds `expected_size` bytes and (when the sink saw the whole blob, the
// ingest being empty when it started) that their digest is `expected`; the store verifies
// again. Mismatches are FailedPrecondition and leave the ingest as it is (the caller aborts or
// resumes it). Commit always releases the writer's hold on the ref, as Writer::Commit does.
// Not thread-safe; `writer` must outlive the sink.
class WriterSink : public ByteSink {
 public:
  // `start_offset`: the bytes the ingest held already (a resume). `expected_size` 0 and an
  // empty `expected` mean unknown.
  WriterSink(Writer& writer, int64_t start_offset, int64_t expected_size, Digest expected,
             size_t chunk = kStreamChunk);

  // InvalidArgument ("longer than expected") once more than `expected_size` bytes would be in
  // the ingest; nothing of the offending write is sent.
  absl::Status Write(absl::string_view data) override;
  // Sends what is buffered.
  absl::Status Close() override;
  // Close, the checks above, then Writer::Commit(expected_size, expected, labels): its errors
  // unchanged (AlreadyExists: the blob was committed before).
  absl::Status Commit(const Labels& labels);

  // For a caller that checks the stream's digest itself (RegistryClient::FetchBlob does while
  // it streams): the sink does not hash it a second time, Commit skips its own digest check
  // (the store still checks `expected`), and digest() is empty. Call before the first Write.
  void LeaveDigestToCaller() { digester_.reset(); }

  // Bytes in the ingest (start offset plus what passed through the sink).
  int64_t offset() const { return start_offset_ + passed_; }
  // The digest of what passed through the sink (the blob's, when start_offset was 0).
  Digest digest() const { return digester_ != nullptr ? digester_->Sum() : Digest(); }

 private:
  absl::Status Flush();

  Writer& writer_;
  const int64_t start_offset_;
  const int64_t expected_size_;
  const Digest expected_;
  const size_t chunk_;
  std::string buf_;
  int64_t passed_ = 0;
  std::unique_ptr<Digester> digester_;
};

}  // namespace berth::content
