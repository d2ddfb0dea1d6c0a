#include "services/contentd/collector_service.h"

#include <utility>

#include "lib/base/grpc_status.h"
#include "lib/server/request_context.h"

namespace berth::contentd {

CollectorService::CollectorService(CollectFn collect, std::string default_namespace)
    : collect_(std::move(collect)), default_namespace_(std::move(default_namespace)) {}

grpc::Status CollectorService::Collect(grpc::ServerContext* server_context,
                                       const ::berth::content::v1::CollectRequest* /*request*/,
                                       ::berth::content::v1::CollectResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<CollectOutcome> outcome = collect_(ctx->ns);
  if (!outcome.ok()) {
    return ToGrpcStatus(outcome.status());
  }
  for (const std::string& digest : outcome->removed) {
    response->add_removed(digest);
  }
  response->set_leases_expired(outcome->leases_expired);
  response->set_ingests_removed(outcome->ingests_removed);
  return grpc::Status::OK;
}

}  // namespace berth::contentd
