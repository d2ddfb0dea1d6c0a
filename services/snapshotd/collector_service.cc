#include "services/snapshotd/collector_service.h"

#include <utility>
#include <vector>

#include "lib/base/grpc_status.h"
#include "lib/server/request_context.h"

namespace berth::snapshotd {

CollectorService::CollectorService(SnapshotCollector& collector, std::string default_namespace)
    : collector_(collector), default_namespace_(std::move(default_namespace)) {}

grpc::Status CollectorService::Collect(grpc::ServerContext* server_context,
                                       const ::berth::snapshots::v1::CollectRequest* /*request*/,
                                       ::berth::snapshots::v1::CollectResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<std::vector<std::string>> removed = collector_.Collect(*ctx);
  if (!removed.ok()) {
    return ToGrpcStatus(removed.status());
  }
  for (const std::string& key : *removed) {
    response->add_removed(key);
  }
  return grpc::Status::OK;
}

}  // namespace berth::snapshotd
