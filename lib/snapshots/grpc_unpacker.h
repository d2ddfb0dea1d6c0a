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
#include "lib/snapshots/unpacker.h"

namespace berth::snapshots {

class GrpcUnpacker : public Unpacker {
 public:
  explicit GrpcUnpacker(std::shared_ptr<grpc::Channel> channel,
                        std::string snapshotter_name = "overlayfs");
  GrpcUnpacker(const GrpcUnpacker&) = delete;
  GrpcUnpacker& operator=(const GrpcUnpacker&) = delete;

  // Unpacker::Unpack over one unary call: ctx's deadline goes with it and snapshotd stops the
  // unpack (and removes what it made) when this call is cancelled or times out. The RPC
  // reports no progress while it runs, so `progress` is called for every layer once the call
  // returned (as kApplied, or kReused for a layer whose size came back 0).
  absl::StatusOr<std::vector<oci::Descriptor>> Unpack(
      const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const Labels& labels,
      const UnpackProgressFn& progress = nullptr) override;

  // Unpacker::Start over UnpackStream: Ready sends the layer's index; progress comes as the
  // server reports it (from a reader thread). Finish half-closes and waits for the result; a
  // session dropped unfinished half-closes early, and snapshotd removes what it made before
  // the call ends (the destructor waits for that). When ctx stops being Alive() while Finish
  // waits, the call is cancelled.
  absl::StatusOr<std::unique_ptr<UnpackSession>> Start(
      const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const Labels& labels,
      const UnpackProgressFn& progress = nullptr) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::berth::snapshots::v1::Unpacker::Stub> stub_;
  const std::string name_;
};

}  // namespace berth::snapshots
