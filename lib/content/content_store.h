#pragma once

// The content store contract, in C++ terms and with no gRPC in it (after containerd's
// content/content.go). Terms:
//   blob    immutable bytes named by their digest, visible in a namespace once committed there.
//   ingest  a write in progress, named by a client-chosen `ref` unique within its namespace; it
//           survives the writer closing (and the daemon restarting) and resumes at its offset.
// Every call takes a Context: the namespace it acts in and the lease protecting what it creates.
// Implementations: LocalContentStore (services/contentd), GrpcContentStore (this folder), which
// talks to a contentd, and MemoryContentStore (this folder, in-process); all pass
// content_store_testsuite.h. All methods are thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/filters/filter.h"

namespace berth::content {

using Labels = std::map<std::string, std::string>;

struct Info {
  Digest digest;
  int64_t size = 0;
  absl::Time created_at = absl::UnixEpoch();
  absl::Time updated_at = absl::UnixEpoch();
  Labels labels;
};

struct IngestStatus {
  std::string ref;
  int64_t offset = 0;     // bytes written so far
  int64_t total = 0;      // expected size, 0 if unknown
  Digest expected;        // expected digest, empty if unknown
  absl::Time started_at = absl::UnixEpoch();
  absl::Time updated_at = absl::UnixEpoch();
};

// Random access to one committed blob. Not thread-safe; open one per reader.
class Reader {
 public:
  virtual ~Reader() = default;
  virtual int64_t Size() const = 0;
  // Reads up to `size` bytes at `offset` into `buf`; returns the count, 0 only at the end.
  // An offset past the end is OutOfRange.
  virtual absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) = 0;
};

// Reads committed blobs.
class Provider {
 public:
  virtual ~Provider() = default;
  // NotFound if the blob is not committed in ctx.ns.
  virtual absl::StatusOr<std::unique_ptr<Reader>> OpenReader(const Context& ctx,
                                                             const Digest& digest) = 0;
};

// One ingest, held exclusively by this object until it is committed, closed or destroyed.
// Not thread-safe.
class Writer {
 public:
  virtual ~Writer() = default;
  virtual absl::StatusOr<IngestStatus> Status() = 0;
  // The digest of everything written so far.
  virtual Digest CurrentDigest() = 0;
  // Appends at the current offset.
  virtual absl::Status Write(absl::string_view data) = 0;
  // Drops everything after `size` bytes. Only 0 is supported (restart from scratch):
  // InvalidArgument otherwise.
  virtual absl::Status Truncate(int64_t size) = 0;
  // Verifies `size` (if > 0) and `expected` (if not empty) against what was written, then makes
  // the blob visible in the namespace with `labels`. On a mismatch returns FailedPrecondition
  // and keeps the ingest, which can be retried at its offset or aborted. If the blob is already
  // committed in the namespace, AlreadyExists (and the ingest is removed). On success the
  // ingest is gone. Commit always releases the writer's hold on the ref, even on error.
  virtual absl::Status Commit(int64_t size, const Digest& expected, const Labels& labels) = 0;
  // Releases the ref without committing; the ingest stays and can be resumed.
  virtual absl::Status Close() = 0;
};

struct WriterOptions {
  std::string ref;      // required
  int64_t total = 0;    // expected size, 0 if unknown
  Digest expected;      // expected digest, empty if unknown
};

// Starts or resumes ingests.
class Ingester {
 public:
  virtual ~Ingester() = default;
  // Opens the ingest named opts.ref in ctx.ns, creating it if needed. If another writer holds
  // the ref: Unavailable ("ref ... is locked"). If opts.expected is already committed in the
  // namespace: AlreadyExists.
  virtual absl::StatusOr<std::unique_ptr<Writer>> OpenWriter(const Context& ctx,
                                                             const WriterOptions& opts) = 0;
};

// Metadata of committed blobs.
class Manager {
 public:
  virtual ~Manager() = default;
  virtual absl::StatusOr<Info> GetInfo(const Context& ctx, const Digest& digest) = 0;
  // Updates the fields named by `fieldpaths` ("labels" or "labels.<key>"); an empty list means
  // all mutable fields (the labels). Returns the updated info. Other paths: InvalidArgument.
  virtual absl::StatusOr<Info> Update(const Context& ctx, const Info& info,
                                      const std::vector<std::string>& fieldpaths) = 0;
  // Calls fn for each blob in ctx.ns matching any of `filters` (containerd's filter syntax,
  // fields digest, size, labels.<key>); all blobs if empty. A malformed filter is
  // InvalidArgument. fn returning an error stops the walk and returns that error.
  virtual absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                            const std::function<absl::Status(const Info&)>& fn) = 0;
  // Removes the blob from ctx.ns (the bytes go when no namespace has it). NotFound if absent.
  virtual absl::Status Delete(const Context& ctx, const Digest& digest) = 0;
};

// Ingests in progress.
class IngestManager {
 public:
  virtual ~IngestManager() = default;
  virtual absl::StatusOr<IngestStatus> GetStatus(const Context& ctx, const std::string& ref) = 0;
  // Filters use containerd's syntax over the field `ref` (e.g. `ref~=^layer-`).
  virtual absl::StatusOr<std::vector<IngestStatus>> ListStatuses(
      const Context& ctx, const std::vector<std::string>& filters) = 0;
  // Removes the ingest and its data. NotFound if there is none.
  virtual absl::Status Abort(const Context& ctx, const std::string& ref) = 0;
};

class ContentStore : public Manager, public Provider, public IngestManager, public Ingester {};

// The fields containerd's filters see on a blob (Walk: digest, size, labels.<key>) and on an
// ingest (ListStatuses: ref, expected). The adaptors refer to their argument: keep it alive.
filters::Adaptor BlobFilterAdaptor(const Info& info);
filters::Adaptor IngestFilterAdaptor(const IngestStatus& status);

// Reads a whole blob (for small documents: manifests, configs). Helper over Provider.
absl::StatusOr<std::string> ReadBlob(Provider& provider, const Context& ctx, const Digest& digest);
// The whole of what `reader` reads (its Size() bytes); `digest` names it in errors.
absl::StatusOr<std::string> ReadBlob(Reader& reader, const Digest& digest);

// Writes `data` as one blob in a single ingest named `ref` and commits it with `labels`.
// AlreadyExists from Commit is treated as success (the blob is there).
absl::Status WriteBlob(Ingester& ingester, const Context& ctx, const std::string& ref,
                       absl::string_view data, const Digest& expected, const Labels& labels);

}  // namespace berth::content
