#pragma once

// containerd.services.snapshots.v1.Snapshots server: a thin layer over any
// snapshots::Snapshotter. snapshotd serves its local snapshotter with it (it never sees the
// snapshotter's class); imaged and execd serve a GrpcSnapshotter on snapshotd, so ctr pointed at
// one of them alone finds the snapshots its records name (`images check`, `containers rm`).
// Each handler reads the namespace and lease from the request metadata, validates its input,
// calls the snapshotter, converts the error once. Events (/snapshot/prepare|commit|remove) are the snapshotter's to
// publish (LocalSnapshotter does, as contentd's store does for content), not this layer's.
//
// The request's `snapshotter` field: snapshotd serves exactly one snapshotter, and containerd's
// proxy client sends the name of its proxy_plugins entry ("berth", whatever the operator chose),
// not ours. So any name is accepted and served by the one snapshotter, as containerd's own
// contrib/snapshotservice does. (`ctr --address snapshotd.sock snapshots --snapshotter X` thus
// works for any X.)
//
// Thread-safe: gRPC calls the handlers concurrently; the Snapshotter contract is thread-safe.

#include <string>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "lib/snapshots/snapshotter.h"

namespace berth::snapshots {

struct SnapshotsServiceOptions {
  // The namespace of requests without a `containerd-namespace` header (containerd's proxy
  // clients send none).
  std::string default_namespace = "default";
};

class SnapshotsService final : public ::containerd::services::snapshots::v1::Snapshots::Service {
 public:
  // `snapshotter` must outlive the service.
  SnapshotsService(snapshots::Snapshotter& snapshotter, SnapshotsServiceOptions options);
  SnapshotsService(const SnapshotsService&) = delete;
  SnapshotsService& operator=(const SnapshotsService&) = delete;

  grpc::Status Prepare(grpc::ServerContext* server_context,
                       const ::containerd::services::snapshots::v1::PrepareSnapshotRequest* request,
                       ::containerd::services::snapshots::v1::PrepareSnapshotResponse* response)
      override;
  grpc::Status View(grpc::ServerContext* server_context,
                    const ::containerd::services::snapshots::v1::ViewSnapshotRequest* request,
                    ::containerd::services::snapshots::v1::ViewSnapshotResponse* response) override;
  grpc::Status Mounts(grpc::ServerContext* server_context,
                      const ::containerd::services::snapshots::v1::MountsRequest* request,
                      ::containerd::services::snapshots::v1::MountsResponse* response) override;
  grpc::Status Commit(grpc::ServerContext* server_context,
                      const ::containerd::services::snapshots::v1::CommitSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Remove(grpc::ServerContext* server_context,
                      const ::containerd::services::snapshots::v1::RemoveSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Stat(grpc::ServerContext* server_context,
                    const ::containerd::services::snapshots::v1::StatSnapshotRequest* request,
                    ::containerd::services::snapshots::v1::StatSnapshotResponse* response) override;
  grpc::Status Update(grpc::ServerContext* server_context,
                      const ::containerd::services::snapshots::v1::UpdateSnapshotRequest* request,
                      ::containerd::services::snapshots::v1::UpdateSnapshotResponse* response)
      override;
  grpc::Status List(
      grpc::ServerContext* server_context,
      const ::containerd::services::snapshots::v1::ListSnapshotsRequest* request,
      grpc::ServerWriter<::containerd::services::snapshots::v1::ListSnapshotsResponse>* writer)
      override;
  grpc::Status Usage(grpc::ServerContext* server_context,
                     const ::containerd::services::snapshots::v1::UsageRequest* request,
                     ::containerd::services::snapshots::v1::UsageResponse* response) override;
  grpc::Status Cleanup(grpc::ServerContext* server_context,
                       const ::containerd::services::snapshots::v1::CleanupRequest* request,
                       google::protobuf::Empty* response) override;

 private:
  snapshots::Snapshotter& snapshotter_;
  const SnapshotsServiceOptions options_;
};

}  // namespace berth::snapshots
