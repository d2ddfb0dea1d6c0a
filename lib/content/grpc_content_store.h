#pragma once

// A content::ContentStore backed by a contentd (or any containerd Content service) over gRPC.
// Code holding a ContentStore& cannot tell it from a LocalContentStore: both pass
// content_store_testsuite.h. Each call sends ctx as the `containerd-namespace` and
// `containerd-lease` metadata headers; server errors come back with their code and message
// unchanged, and transport failures are Unavailable.
//
//   auto channel = berth::Dial("/run/berth/contentd.sock");
//   berth::content::GrpcContentStore store(channel);
//   auto data = berth::content::ReadBlob(store, {.ns = "default"}, digest);
//
// Thread-safe (as the contract requires); Readers and Writers are not, as the contract says.

#include <grpcpp/grpcpp.h>

#include <memory>

#include "containerd/services/content/v1/content.grpc.pb.h"
#include "lib/content/content_store.h"

namespace berth::content {

class GrpcContentStore : public ContentStore {
 public:
  explicit GrpcContentStore(std::shared_ptr<grpc::Channel> channel);
  GrpcContentStore(const GrpcContentStore&) = delete;
  GrpcContentStore& operator=(const GrpcContentStore&) = delete;

  // Provider. The reader learns the size from Info; each ReadAt is one Read call.
  absl::StatusOr<std::unique_ptr<Reader>> OpenReader(const Context& ctx,
                                                     const Digest& digest) override;
  // A reader of a blob whose size the caller already has (from a descriptor), without the Info
  // call: a missing blob is NotFound at the first ReadAt, and a wrong size reads short or
  // truncated, so the caller checks what it read against the digest.
  std::unique_ptr<Reader> OpenReaderOfSize(const Context& ctx, const Digest& digest,
                                           int64_t size);

  // Ingester. The writer keeps one Write stream open for its whole life (the server holds the
  // ref's lock for as long as the stream lives): STAT on open, WRITE in chunks of up to 1 MiB,
  // COMMIT. Destroying an uncommitted writer closes it (the ingest stays).
  absl::StatusOr<std::unique_ptr<Writer>> OpenWriter(const Context& ctx,
                                                     const WriterOptions& opts) override;

  // Manager.
  absl::StatusOr<Info> GetInfo(const Context& ctx, const Digest& digest) override;
  absl::StatusOr<Info> Update(const Context& ctx, const Info& info,
                              const std::vector<std::string>& fieldpaths) override;
  absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                    const std::function<absl::Status(const Info&)>& fn) override;
  absl::Status Delete(const Context& ctx, const Digest& digest) override;

  // IngestManager.
  absl::StatusOr<IngestStatus> GetStatus(const Context& ctx, const std::string& ref) override;
  absl::StatusOr<std::vector<IngestStatus>> ListStatuses(
      const Context& ctx, const std::vector<std::string>& filters) override;
  absl::Status Abort(const Context& ctx, const std::string& ref) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::content::v1::Content::Stub> stub_;
};

}  // namespace berth::content
