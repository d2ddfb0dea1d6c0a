#include "lib/snapshots/snapshots_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_status.h"
#include "lib/server/block_writer.h"
#include "lib/server/request_context.h"
#include "lib/snapshots/proto_convert.h"

namespace berth::snapshots {
namespace {

namespace v1 = ::containerd::services::snapshots::v1;

// InvalidArgument naming the field when `value` is empty.
absl::Status Require(const char* method, const char* field, const std::string& value) {
  if (value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(method, ": ", field, " is required"));
  }
  return absl::OkStatus();
}

snapshots::Labels LabelsFrom(const google::protobuf::Map<std::string, std::string>& map) {
  return snapshots::Labels(map.begin(), map.end());
}

}  // namespace

SnapshotsService::SnapshotsService(snapshots::Snapshotter& snapshotter,
                                   SnapshotsServiceOptions options)
    : snapshotter_(snapshotter), options_(std::move(options)) {}

grpc::Status SnapshotsService::Prepare(grpc::ServerContext* server_context,
                                       const v1::PrepareSnapshotRequest* request,
                                       v1::PrepareSnapshotResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("prepare", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  absl::StatusOr<std::vector<mount::Mount>> mounts = snapshotter_.Prepare(
      *ctx, request->key(), request->parent(), LabelsFrom(request->labels()));
  if (!mounts.ok()) {
    return ToGrpcStatus(mounts.status());
  }
  snapshots::MountsToProto(*mounts, response->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::View(grpc::ServerContext* server_context,
                                    const v1::ViewSnapshotRequest* request,
                                    v1::ViewSnapshotResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("view", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  absl::StatusOr<std::vector<mount::Mount>> mounts = snapshotter_.View(
      *ctx, request->key(), request->parent(), LabelsFrom(request->labels()));
  if (!mounts.ok()) {
    return ToGrpcStatus(mounts.status());
  }
  snapshots::MountsToProto(*mounts, response->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext* server_context,
                                      const v1::MountsRequest* request,
                                      v1::MountsResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("mounts", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  absl::StatusOr<std::vector<mount::Mount>> mounts = snapshotter_.Mounts(*ctx, request->key());
  if (!mounts.ok()) {
    return ToGrpcStatus(mounts.status());
  }
  snapshots::MountsToProto(*mounts, response->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext* server_context,
                                      const v1::CommitSnapshotRequest* request,
                                      google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("commit", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  if (absl::Status st = Require("commit", "name", request->name()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  absl::Status status = snapshotter_.Commit(*ctx, request->name(), request->key(),
                                            LabelsFrom(request->labels()));
  if (!status.ok()) {
    return ToGrpcStatus(status);
  }
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext* server_context,
                                      const v1::RemoveSnapshotRequest* request,
                                      google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("remove", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  if (absl::Status status = snapshotter_.Remove(*ctx, request->key()); !status.ok()) {
    return ToGrpcStatus(status);
  }
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext* server_context,
                                    const v1::StatSnapshotRequest* request,
                                    v1::StatSnapshotResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("stat", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  absl::StatusOr<snapshots::Info> info = snapshotter_.Stat(*ctx, request->key());
  if (!info.ok()) {
    return ToGrpcStatus(info.status());
  }
  *response->mutable_info() = snapshots::InfoToProto(*info);
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Update(grpc::ServerContext* server_context,
                                      const v1::UpdateSnapshotRequest* request,
                                      v1::UpdateSnapshotResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("update", "info.name", request->info().name()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  std::vector<std::string> paths(request->update_mask().paths().begin(),
                                 request->update_mask().paths().end());
  absl::StatusOr<snapshots::Info> info =
      snapshotter_.Update(*ctx, snapshots::InfoFromProto(request->info()), paths);
  if (!info.ok()) {
    return ToGrpcStatus(info.status());
  }
  *response->mutable_info() = snapshots::InfoToProto(*info);
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::List(grpc::ServerContext* server_context,
                                    const v1::ListSnapshotsRequest* request,
                                    grpc::ServerWriter<v1::ListSnapshotsResponse>* writer) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  std::vector<std::string> filters(request->filters().begin(), request->filters().end());
  server::BlockWriter<v1::ListSnapshotsResponse> blocks(writer, "list");
  absl::Status status = snapshotter_.Walk(*ctx, filters, [&](const snapshots::Info& info) {
    return blocks.Add([&](v1::ListSnapshotsResponse& block) {
      *block.add_info() = snapshots::InfoToProto(info);
    });
  });
  if (status.ok()) {
    status = blocks.Flush();
  }
  return ToGrpcStatus(status);
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext* server_context,
                                     const v1::UsageRequest* request,
                                     v1::UsageResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (absl::Status st = Require("usage", "key", request->key()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  absl::StatusOr<snapshots::Usage> usage = snapshotter_.GetUsage(*ctx, request->key());
  if (!usage.ok()) {
    return ToGrpcStatus(usage.status());
  }
  response->set_size(usage->size);
  response->set_inodes(usage->inodes);
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext* server_context,
                                       const v1::CleanupRequest* request,
                                       google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  return ToGrpcStatus(snapshotter_.Cleanup(*ctx));
}

}  // namespace berth::snapshots
