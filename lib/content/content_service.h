#pragma once

// containerd.services.content.v1.Content server: a thin layer over any content::ContentStore.
// contentd serves its local store with it (it never sees the store's class); imaged serves a
// GrpcContentStore on contentd, so ctr and containerd's Go client pointed at imaged alone find
// the content its records name. Each handler reads the namespace and lease from the request
// metadata, validates its input, calls the store, and converts the error once. Write follows containerd's contentserver.go message for message,
// so containerd's proxy client (and ctr) interoperate with it.
//
// Metrics (when a registry is given):
//   berth_content_ingested_bytes_total  counter  bytes accepted by Write
//   berth_content_stored_blobs          gauge    distinct blobs on disk
//   berth_content_stored_bytes          gauge    their total size
// The gauges are refreshed from `stats` at construction and after every commit and delete.
// Thread-safe: gRPC calls the handlers concurrently.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "containerd/services/content/v1/content.grpc.pb.h"
#include "lib/content/content_store.h"

namespace berth::content {

// What the store holds, for the gauges.
struct ContentStats {
  int64_t blobs = 0;
  int64_t bytes = 0;
};

struct ContentServiceOptions {
  // The namespace of requests without a `containerd-namespace` header (containerd's proxy
  // clients send none).
  std::string default_namespace = "default";
  // Null: no metrics.
  std::shared_ptr<prometheus::Registry> registry;
  // Reads the gauges' values; must be thread-safe. Null: the gauges stay at 0.
  std::function<ContentStats()> stats;
};

class ContentService final : public ::containerd::services::content::v1::Content::Service {
 public:
  // `store` must outlive the service.
  ContentService(content::ContentStore& store, ContentServiceOptions options);
  ContentService(const ContentService&) = delete;
  ContentService& operator=(const ContentService&) = delete;

  using Req = ::containerd::services::content::v1::WriteContentRequest;
  using Resp = ::containerd::services::content::v1::WriteContentResponse;

  grpc::Status Info(grpc::ServerContext* server_context,
                    const ::containerd::services::content::v1::InfoRequest* request,
                    ::containerd::services::content::v1::InfoResponse* response) override;
  grpc::Status Update(grpc::ServerContext* server_context,
                      const ::containerd::services::content::v1::UpdateRequest* request,
                      ::containerd::services::content::v1::UpdateResponse* response) override;
  grpc::Status List(grpc::ServerContext* server_context,
                    const ::containerd::services::content::v1::ListContentRequest* request,
                    grpc::ServerWriter<::containerd::services::content::v1::ListContentResponse>*
                        writer) override;
  grpc::Status Delete(grpc::ServerContext* server_context,
                      const ::containerd::services::content::v1::DeleteContentRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Read(grpc::ServerContext* server_context,
                    const ::containerd::services::content::v1::ReadContentRequest* request,
                    grpc::ServerWriter<::containerd::services::content::v1::ReadContentResponse>*
                        writer) override;
  grpc::Status Status(grpc::ServerContext* server_context,
                      const ::containerd::services::content::v1::StatusRequest* request,
                      ::containerd::services::content::v1::StatusResponse* response) override;
  grpc::Status ListStatuses(
      grpc::ServerContext* server_context,
      const ::containerd::services::content::v1::ListStatusesRequest* request,
      ::containerd::services::content::v1::ListStatusesResponse* response) override;
  grpc::Status Write(grpc::ServerContext* server_context,
                     grpc::ServerReaderWriter<Resp, Req>* stream) override;
  grpc::Status Abort(grpc::ServerContext* server_context,
                     const ::containerd::services::content::v1::AbortRequest* request,
                     google::protobuf::Empty* response) override;

 private:
  // One Write session after the first message was read (contentserver.go's loop).
  absl::Status WriteSession(const Context& ctx, Req request,
                            grpc::ServerReaderWriter<Resp, Req>* stream);
  // Streams `remaining` bytes from `offset` in Read responses of up to 1 MiB each.
  absl::Status SendChunks(
      content::Reader& reader, const Digest& digest, int64_t offset, int64_t remaining,
      grpc::ServerWriter<::containerd::services::content::v1::ReadContentResponse>* writer);
  void RefreshGauges();

  content::ContentStore& store_;
  const ContentServiceOptions options_;
  prometheus::Counter* ingested_bytes_ = nullptr;  // owned by the registry; null without one
  prometheus::Gauge* stored_blobs_ = nullptr;
  prometheus::Gauge* stored_bytes_ = nullptr;
};

}  // namespace berth::content
