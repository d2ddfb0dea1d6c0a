#pragma once

// Byte streams: the pull and push ends every layer, blob and tar pipeline is made of (a blob
// read from content, a decompressor, a tar reader; a tar writer, a compressor, a content
// writer). Header-only.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth {

// A pull stream. Not thread-safe.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `size` (> 0) bytes into `buf`; returns the count, 0 only at the end.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t size) = 0;
  // Drops the next `count` bytes; returns how many were dropped (fewer only at the end).
  // Reads and discards unless the source can seek.
  virtual absl::StatusOr<int64_t> Skip(int64_t count) {
    char buf[64 * 1024];
    int64_t skipped = 0;
    while (skipped < count) {
      absl::StatusOr<size_t> n =
          Read(buf, static_cast<size_t>(std::min<int64_t>(count - skipped, sizeof(buf))));
      if (!n.ok()) {
        return n.status();
      }
      if (*n == 0) {
        break;
      }
      skipped += static_cast<int64_t>(*n);
    }
    return skipped;
  }
};

// A push stream. Not thread-safe.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual absl::Status Write(absl::string_view data) = 0;
  // Flushes whatever is buffered (a compressor's trailer). Write after Close is an error.
  virtual absl::Status Close() = 0;
};

// A ByteSource over a string (tests, small blobs).
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    size_t n = std::min(size, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  absl::StatusOr<int64_t> Skip(int64_t count) override {
    size_t n = std::min(static_cast<size_t>(std::max<int64_t>(count, 0)), data_.size() - pos_);
    pos_ += n;
    return static_cast<int64_t>(n);
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

// A ByteSink into a string.
class StringSink : public ByteSink {
 public:
  absl::Status Write(absl::string_view data) override {
    data_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
};

}  // namespace berth
