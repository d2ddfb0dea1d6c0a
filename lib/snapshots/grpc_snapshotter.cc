#include "lib/snapshots/grpc_snapshotter.h"

#include <utility>

#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/snapshots/proto_convert.h"

namespace berth::snapshots {

GrpcSnapshotter::GrpcSnapshotter(std::shared_ptr<grpc::Channel> channel,
                                 std::string snapshotter_name)
    : channel_(std::move(channel)),
      stub_(v1::Snapshots::NewStub(channel_)),
      name_(std::move(snapshotter_name)) {}

absl::StatusOr<Info> GrpcSnapshotter::Stat(const Context& ctx, const std::string& key) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::StatSnapshotRequest request;
  request.set_snapshotter(name_);
  request.set_key(key);
  v1::StatSnapshotResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Stat(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return InfoFromProto(response.info());
}

absl::StatusOr<Info> GrpcSnapshotter::Update(const Context& ctx, const Info& info,
                                             const std::vector<std::string>& fieldpaths) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UpdateSnapshotRequest request;
  request.set_snapshotter(name_);
  *request.mutable_info() = InfoToProto(info);
  for (const std::string& path : fieldpaths) {
    request.mutable_update_mask()->add_paths(path);
  }
  v1::UpdateSnapshotResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Update(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return InfoFromProto(response.info());
}

absl::StatusOr<Usage> GrpcSnapshotter::GetUsage(const Context& ctx, const std::string& key) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UsageRequest request;
  request.set_snapshotter(name_);
  request.set_key(key);
  v1::UsageResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Usage(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return Usage{response.size(), response.inodes()};
}

absl::StatusOr<std::vector<mount::Mount>> GrpcSnapshotter::Mounts(const Context& ctx,
                                                                  const std::string& key) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::MountsRequest request;
  request.set_snapshotter(name_);
  request.set_key(key);
  v1::MountsResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Mounts(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return MountsFromProto(response.mounts());
}

absl::StatusOr<std::vector<mount::Mount>> GrpcSnapshotter::Prepare(const Context& ctx,
                                                                   const std::string& key,
                                                                   const std::string& parent,
                                                                   const Labels& labels) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::PrepareSnapshotRequest request;
  request.set_snapshotter(name_);
  request.set_key(key);
  request.set_parent(parent);
  request.mutable_labels()->insert(labels.begin(), labels.end());
  v1::PrepareSnapshotResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Prepare(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return MountsFromProto(response.mounts());
}

absl::StatusOr<std::vector<mount::Mount>> GrpcSnapshotter::View(const Context& ctx,
                                                                const std::string& key,
                                                                const std::string& parent,
                                                                const Labels& labels) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ViewSnapshotRequest request;
  request.set_snapshotter(name_);
  request.set_key(key);
  request.set_parent(parent);
  request.mutable_labels()->insert(labels.begin(), labels.end());
  v1::ViewSnapshotResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->View(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return MountsFromProto(response.mounts());
}

absl::Status GrpcSnapshotter::Commit(const Context& ctx, const std::string& name,
                                     const std::string& key, const Labels& labels) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::CommitSnapshotRequest request;
  request.set_snapshotter(name_);
  request.set_name(name);
  request.set_key(key);
  request.mutable_labels()->insert(labels.begin(), labels.end());
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Commit(&client_context, request, &response));
}

absl::Status GrpcSnapshotter::Remove(const Context& ctx, const std::string& key) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::RemoveSnapshotRequest request;
  request.set_snapshotter(name_);
  request.set_key(key);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Remove(&client_context, request, &response));
}

absl::Status GrpcSnapshotter::Walk(const Context& ctx, const std::vector<std::string>& filters,
                                   const std::function<absl::Status(const Info&)>& fn) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ListSnapshotsRequest request;
  request.set_snapshotter(name_);
  for (const std::string& filter : filters) {
    request.add_filters(filter);
  }
  std::unique_ptr<grpc::ClientReader<v1::ListSnapshotsResponse>> stream =
      stub_->List(&client_context, request);
  v1::ListSnapshotsResponse response;
  absl::Status fn_status;
  while (fn_status.ok() && stream->Read(&response)) {
    for (const v1::Info& info : response.info()) {
      fn_status = fn(InfoFromProto(info));
      if (!fn_status.ok()) {
        break;
      }
    }
  }
  if (!fn_status.ok()) {
    client_context.TryCancel();
    // Finish reports Cancelled now; what the caller wants is fn's error.
    grpc::Status cancelled = stream->Finish();
    static_cast<void>(cancelled);
    return fn_status;
  }
  return FromGrpcStatus(stream->Finish());
}

absl::Status GrpcSnapshotter::Cleanup(const Context& ctx) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::CleanupRequest request;
  request.set_snapshotter(name_);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Cleanup(&client_context, request, &response));
}

}  // namespace berth::snapshots
