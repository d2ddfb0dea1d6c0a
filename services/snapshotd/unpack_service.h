#pragma once

// snapshotd's berth.snapshots.v1.Unpacker server (proto/berth/snapshots/v1/unpack.proto): a
// thin layer over ParallelUnpacker (Unpack; UnpackStream over its sessions, the unpacker's
// progress written to the stream as it happens). Reads the namespace and lease from the request metadata,
// converts the descriptors, converts the error once. The request's `snapshotter` is accepted
// and ignored, as by the Snapshots server (snapshotd serves one snapshotter).
//
// Thread-safe.

#include <string>

#include "berth/snapshots/v1/unpack.grpc.pb.h"
#include "services/snapshotd/parallel_unpacker.h"

namespace berth::snapshotd {

class UnpackService final : public ::berth::snapshots::v1::Unpacker::Service {
 public:
  // `unpacker` must outlive the service. `default_namespace` serves requests without a
  // `containerd-namespace` header.
  UnpackService(ParallelUnpacker& unpacker, std::string default_namespace);
  UnpackService(const UnpackService&) = delete;
  UnpackService& operator=(const UnpackService&) = delete;

  grpc::Status Unpack(grpc::ServerContext* server_context,
                      const ::berth::snapshots::v1::UnpackRequest* request,
                      ::berth::snapshots::v1::UnpackResponse* response) override;
  grpc::Status UnpackStream(
      grpc::ServerContext* server_context,
      grpc::ServerReaderWriter<::berth::snapshots::v1::UnpackStreamResponse,
                               ::berth::snapshots::v1::UnpackStreamRequest>* stream) override;

 private:
  ParallelUnpacker& unpacker_;
  const std::string default_namespace_;
};

}  // namespace berth::snapshotd
