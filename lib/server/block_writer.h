#pragma once

// Server streams that send a list in blocks, as containerd's List handlers do.

#include <string>
#include <utility>

#include <grpcpp/support/sync_stream.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace berth::server {

// How many items one List response carries (containerd's services send blocks of 100).
inline constexpr int kListBlockSize = 100;

// Collects items into `Response` messages and writes each one to `writer` once it holds
// `block_size` items; Flush writes the rest. Errors are Cancelled ("<method>: the client went
// away") when the client stops reading. Not thread-safe: one per handler call.
template <typename Response>
class BlockWriter {
 public:
  BlockWriter(grpc::ServerWriterInterface<Response>* writer, absl::string_view method,
              int block_size = kListBlockSize)
      : writer_(writer), method_(method), block_size_(block_size) {}

  BlockWriter(const BlockWriter&) = delete;
  BlockWriter& operator=(const BlockWriter&) = delete;

  // Adds one item with `add(Response&)` (which must add exactly one), writing the block when
  // it is full.
  template <typename AddFn>
  absl::Status Add(AddFn&& add) {
    std::forward<AddFn>(add)(block_);
    if (++count_ < block_size_) {
      return absl::OkStatus();
    }
    return WriteBlock();
  }

  // Writes the items not yet written, if any.
  absl::Status Flush() { return count_ > 0 ? WriteBlock() : absl::OkStatus(); }

 private:
  absl::Status WriteBlock() {
    if (!writer_->Write(block_)) {
      return absl::CancelledError(absl::StrCat(method_, ": the client went away"));
    }
    block_.Clear();
    count_ = 0;
    return absl::OkStatus();
  }

  grpc::ServerWriterInterface<Response>* writer_;
  std::string method_;
  int block_size_;
  Response block_;
  int count_ = 0;
};

}  // namespace berth::server
