#pragma once

// diff::Applier and diff::Comparer backed by a snapshotd (or any containerd Diff service) over
// gRPC. Each call sends ctx as the `containerd-namespace` and `containerd-lease` metadata
// headers; server errors come back with their code and message unchanged, and transport
// failures are Unavailable. Apply and Diff can take as long as a layer takes to unpack or
// pack: no deadline is set here (the caller's ctx has none either; cancel by closing the
// channel).
//
//   berth::diff::GrpcDiff differ(berth::Dial("/run/berth/snapshotd.sock"));
//   auto mounts = snapshotter.Prepare(ctx, "extract-1", parent, {});
//   auto applied = differ.Apply(ctx, layer_descriptor, *mounts);
//
// Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <vector>

#include "containerd/services/diff/v1/diff.grpc.pb.h"
#include "lib/diff/diff.h"

namespace berth::diff {

class GrpcDiff : public Applier, public Comparer {
 public:
  explicit GrpcDiff(std::shared_ptr<grpc::Channel> channel);
  GrpcDiff(const GrpcDiff&) = delete;
  GrpcDiff& operator=(const GrpcDiff&) = delete;

  // The response's descriptor must carry a valid digest (DataLoss otherwise).
  absl::StatusOr<oci::Descriptor> Apply(const Context& ctx, const oci::Descriptor& desc,
                                        const std::vector<mount::Mount>& mounts) override;
  absl::StatusOr<oci::Descriptor> Compare(const Context& ctx,
                                          const std::vector<mount::Mount>& lower,
                                          const std::vector<mount::Mount>& upper,
                                          const CompareOptions& options) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::diff::v1::Diff::Stub> stub_;
};

}  // namespace berth::diff
