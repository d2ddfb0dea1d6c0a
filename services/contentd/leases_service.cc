#include "services/contentd/leases_service.h"

#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/base/grpc_status.h"
#include "lib/leases/proto_convert.h"
#include "lib/server/request_context.h"

namespace berth::contentd {
namespace {

namespace v1 = ::containerd::services::leases::v1;

}  // namespace

LeasesService::LeasesService(leases::LeaseManager& leases, std::string default_namespace)
    : leases_(leases), default_namespace_(std::move(default_namespace)) {}

grpc::Status LeasesService::Create(grpc::ServerContext* server_context,
                                   const v1::CreateRequest* request, v1::CreateResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  std::string id = request->id().empty() ? GenerateLeaseId() : request->id();
  std::map<std::string, std::string> labels(request->labels().begin(), request->labels().end());
  absl::StatusOr<leases::Lease> lease = leases_.Create(*ctx, id, labels);
  if (!lease.ok()) {
    return ToGrpcStatus(lease.status());
  }
  *response->mutable_lease() = leases::LeaseToProto(*lease);
  return grpc::Status::OK;
}

grpc::Status LeasesService::Delete(grpc::ServerContext* server_context,
                                   const v1::DeleteRequest* request,
                                   google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  return ToGrpcStatus(leases_.Delete(*ctx, request->id(), request->sync()));
}

grpc::Status LeasesService::List(grpc::ServerContext* server_context,
                                 const v1::ListRequest* request, v1::ListResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  std::vector<std::string> filters(request->filters().begin(), request->filters().end());
  absl::StatusOr<std::vector<leases::Lease>> list = leases_.List(*ctx, filters);
  if (!list.ok()) {
    return ToGrpcStatus(list.status());
  }
  for (const leases::Lease& lease : *list) {
    *response->add_leases() = leases::LeaseToProto(lease);
  }
  return grpc::Status::OK;
}

grpc::Status LeasesService::AddResource(grpc::ServerContext* server_context,
                                        const v1::AddResourceRequest* request,
                                        google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  return ToGrpcStatus(
      leases_.AddResource(*ctx, request->id(), leases::ResourceFromProto(request->resource())));
}

grpc::Status LeasesService::DeleteResource(grpc::ServerContext* server_context,
                                           const v1::DeleteResourceRequest* request,
                                           google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  return ToGrpcStatus(
      leases_.DeleteResource(*ctx, request->id(), leases::ResourceFromProto(request->resource())));
}

grpc::Status LeasesService::ListResources(grpc::ServerContext* server_context,
                                          const v1::ListResourcesRequest* request,
                                          v1::ListResourcesResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<std::vector<leases::Resource>> resources =
      leases_.ListResources(*ctx, request->id());
  if (!resources.ok()) {
    return ToGrpcStatus(resources.status());
  }
  for (const leases::Resource& resource : *resources) {
    *response->add_resources() = leases::ResourceToProto(resource);
  }
  return grpc::Status::OK;
}

std::string GenerateLeaseId() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  thread_local absl::BitGen gen;
  std::string random(4, 'a');
  for (char& c : random) {
    c = kAlphabet[absl::Uniform<size_t>(gen, 0, sizeof(kAlphabet) - 1)];
  }
  int64_t nanos = absl::ToUnixNanos(absl::Now()) % 1000000000;
  return absl::StrCat(nanos, "-", random);
}

}  // namespace berth::contentd
