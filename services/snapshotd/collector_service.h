#pragma once

// snapshotd's berth.snapshots.v1.Collector server (proto/berth/snapshots/v1/collector.proto):
// a thin layer over SnapshotCollector, collecting the request's namespace. Thread-safe.

#include <string>

#include "berth/snapshots/v1/collector.grpc.pb.h"
#include "services/snapshotd/snapshot_collector.h"

namespace berth::snapshotd {

class CollectorService final : public ::berth::snapshots::v1::Collector::Service {
 public:
  // `collector` must outlive the service. `default_namespace` serves requests without a
  // `containerd-namespace` header.
  CollectorService(SnapshotCollector& collector, std::string default_namespace);
  CollectorService(const CollectorService&) = delete;
  CollectorService& operator=(const CollectorService&) = delete;

  grpc::Status Collect(grpc::ServerContext* server_context,
                       const ::berth::snapshots::v1::CollectRequest* request,
                       ::berth::snapshots::v1::CollectResponse* response) override;

 private:
  SnapshotCollector& collector_;
  const std::string default_namespace_;
};

}  // namespace berth::snapshotd
