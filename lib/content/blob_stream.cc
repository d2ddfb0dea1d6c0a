#include "lib/content/blob_stream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"

namespace berth::content {

absl::StatusOr<std::unique_ptr<BlobSource>> BlobSource::Open(Provider& provider,
                                                             const Context& ctx,
                                                             const Digest& digest,
                                                             int64_t expected_size,
                                                             size_t chunk) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Reader> reader, provider.OpenReader(ctx, digest));
  if (expected_size > 0 && reader->Size() != expected_size) {
    return absl::FailedPreconditionError(
        absl::StrCat("blob ", digest.ToString(), ": expected ", expected_size,
                     " bytes but the blob has ", reader->Size()));
  }
  return std::make_unique<BlobSource>(std::move(reader), ctx, chunk);
}

BlobSource::BlobSource(std::unique_ptr<Reader> reader, Context ctx, size_t chunk)
    : reader_(std::move(reader)),
      ctx_(std::move(ctx)),
      chunk_(std::max<size_t>(1, chunk)),
      size_(reader_->Size()) {}

absl::StatusOr<size_t> BlobSource::Read(char* buf, size_t size) {
  if (offset_ >= size_) {
    return 0;
  }
  BERTH_RETURN_IF_ERROR(ctx_.Alive());
  BERTH_ASSIGN_OR_RETURN(size_t n, reader_->ReadAt(offset_, buf, std::min(size, chunk_)));
  if (n == 0) {
    return absl::DataLossError(absl::StrCat("blob ended at ", offset_, " of ", size_, " bytes"));
  }
  offset_ += static_cast<int64_t>(n);
  return n;
}

absl::StatusOr<int64_t> BlobSource::Skip(int64_t count) {
  int64_t skipped = std::clamp<int64_t>(count, 0, size_ - offset_);
  offset_ += skipped;
  return skipped;
}

WriterSink::WriterSink(Writer& writer, int64_t start_offset, int64_t expected_size,
                       Digest expected, size_t chunk)
    : writer_(writer),
      start_offset_(start_offset),
      expected_size_(expected_size),
      expected_(std::move(expected)),
      chunk_(std::max<size_t>(1, chunk)) {
  absl::StatusOr<std::unique_ptr<Digester>> digester =
      expected_.IsEmpty() ? Digester::Sha256() : Digester::Create(expected_.algorithm());
  digester_ = digester.ok() ? *std::move(digester) : Digester::Sha256();
  buf_.reserve(chunk_);
}

absl::Status WriterSink::Write(absl::string_view data) {
  if (expected_size_ > 0 && offset() + static_cast<int64_t>(data.size()) > expected_size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("the stream is longer than the expected ", expected_size_, " bytes"));
  }
  if (digester_ != nullptr) {
    digester_->Update(data);
  }
  passed_ += static_cast<int64_t>(data.size());
  while (!data.empty()) {
    size_t take = std::min(data.size(), chunk_ - buf_.size());
    buf_.append(data.data(), take);
    data.remove_prefix(take);
    if (buf_.size() == chunk_) {
      BERTH_RETURN_IF_ERROR(Flush());
    }
  }
  return absl::OkStatus();
}

absl::Status WriterSink::Flush() {
  if (buf_.empty()) {
    return absl::OkStatus();
  }
  absl::Status status = writer_.Write(buf_);
  buf_.clear();
  return status;
}

absl::Status WriterSink::Close() { return Flush(); }

absl::Status WriterSink::Commit(const Labels& labels) {
  absl::Status status = Flush();
  if (status.ok() && expected_size_ > 0 && offset() != expected_size_) {
    status = absl::FailedPreconditionError(
        absl::StrCat("the ingest holds ", offset(), " bytes, expected ", expected_size_));
  }
  if (status.ok() && start_offset_ == 0 && !expected_.IsEmpty() && digester_ != nullptr &&
      digest() != expected_) {
    status = absl::FailedPreconditionError(absl::StrCat(
        "digest mismatch: got ", digest().ToString(), ", expected ", expected_.ToString()));
  }
  if (!status.ok()) {
    writer_.Close().IgnoreError();  // release the ref, as Writer::Commit does on error
    return status;
  }
  return writer_.Commit(expected_size_, expected_, labels);
}

}  // namespace berth::content
