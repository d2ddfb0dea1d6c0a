#pragma once

// The client of snapshotd's berth.snapshots.v1.Unpacker (proto/berth/snapshots/v1/unpack.proto):
// unpacks a whole layer chain in one call, the layers applied in parallel on the overlay
// snapshotter. ctx goes as the `containerd-namespace` and `containerd-lease` headers; server
// errors come back with their code and message unchanged, transport failures are Unavailable.
//
//   berth::snapshots::GrpcUnpacker unpacker(berth::Dial("/run/berth/snapshotd.sock"));
//   auto applied = unpacker.Unpack({"default", lease}, layers, chain_ids, {});
//
// Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "berth/snapshots/v1/unpack.grpc.pb.h"
#include "lib/base/context.h"
#include "lib/oci/descriptor.h"
#include "lib/snapshots/snapshotter.h"

namespace berth::snapshots {

class GrpcUnpacker {
 public:
  explicit GrpcUnpacker(std::shared_ptr<grpc::Channel> channel,
                        std::string snapshotter_name = "overlayfs");
  GrpcUnpacker(const GrpcUnpacker&) = delete;
  GrpcUnpacker& operator=(const GrpcUnpacker&) = delete;

  // `layers` bottom first, `chain[i]` the committed name of layer i. Returns each layer's
  // uncompressed descriptor (a reused layer's digest may be empty: see unpack.proto).
  absl::StatusOr<std::vector<oci::Descriptor>> Unpack(const Context& ctx,
                                                      const std::vector<oci::Descriptor>& layers,
                                                      const std::vector<std::string>& chain,
                                                      const Labels& labels);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::berth::snapshots::v1::Unpacker::Stub> stub_;
  const std::string name_;
};

}  // namespace berth::snapshots
