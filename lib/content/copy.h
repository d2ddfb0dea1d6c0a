#pragma once

// content::Copy: a stream into the content store as one blob, resuming an interrupted ingest
// (containerd's content.Copy). What the CLI's `content ingest` and imaged's downloads share.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/content/content_store.h"
#include "lib/oci/descriptor.h"

namespace berth::content {

struct CopyOptions {
  // Set on the blob; merged into an existing blob's labels when it was there already.
  Labels labels;
  // How messages name the stream and the descriptor's size ("stdin", "--expected-size").
  std::string source_name = "the source";
  std::string size_name = "the expected size";
  // Called once, before anything is sent, when the ingest already held `offset` (> 0) bytes
  // that were skipped in the source.
  std::function<void(int64_t offset)> on_resume;
  // Called after each chunk sent, with the bytes in the ingest so far.
  std::function<void(int64_t offset)> progress;
};

struct CopyResult {
  Digest digest;
  int64_t size = 0;
  int64_t resumed_from = 0;     // bytes the ingest held before this call
  bool already_existed = false;  // the blob was committed before; nothing was sent
};

// Copies `source` into `store` as the blob `desc` (digest and size each optional: empty or 0
// mean unknown) through the ingest `ref` in ctx.ns:
// - If `desc.digest` is committed already, nothing is read (already_existed; labels merged).
// - An ingest left at offset N by an earlier attempt is resumed: the first N bytes of `source`
//   are skipped (ByteSource::Skip), the rest appended. An ingest longer than desc.size starts
//   over.
// - The commit checks desc.size and desc.digest; AlreadyExists from it means another writer
//   committed the same blob meanwhile: success (already_existed).
// Errors, each naming the ingest:
//   FailedPrecondition, ingest aborted  the source is longer than desc.size, or all of it is in
//                                       and its digest is not desc.digest: a retry cannot help.
//   FailedPrecondition, ingest kept     the source ended before desc.size bytes, or is shorter
//                                       than what the ingest already holds.
//   Cancelled / DeadlineExceeded        ctx stopped being Alive (checked between chunks);
//                                       the ingest is kept for a resume.
//   the source's and the store's errors (the ingest kept), Unavailable when the ref is locked.
// The writer is always released before Copy returns.
absl::StatusOr<CopyResult> Copy(const Context& ctx, ContentStore& store, const std::string& ref,
                                ByteSource& source, const oci::Descriptor& desc,
                                const CopyOptions& options = {});

}  // namespace berth::content
