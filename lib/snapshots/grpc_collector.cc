#include <utility>

#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/snapshots/collector.h"

namespace berth::snapshots {

GrpcCollector::GrpcCollector(std::shared_ptr<grpc::Channel> channel)
    : stub_(::berth::snapshots::v1::Collector::NewStub(std::move(channel))) {}

absl::StatusOr<std::vector<std::string>> GrpcCollector::Collect(const Context& caller) {
  Context ctx = caller;
  ctx.lease.clear();
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  ::berth::snapshots::v1::CollectRequest request;
  ::berth::snapshots::v1::CollectResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Collect(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return std::vector<std::string>(response.removed().begin(), response.removed().end());
}

}  // namespace berth::snapshots
