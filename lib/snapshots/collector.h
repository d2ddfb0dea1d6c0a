#pragma once

// Garbage collection of snapshots, as a contract (snapshotd's SnapshotCollector serves it over
// berth.snapshots.v1.Collector) and its gRPC client. imaged triggers it after deleting an image
// (Images.Delete with sync waits for it); `berth snapshot gc` runs it on demand.
//
//   berth::snapshots::GrpcCollector collector(berth::Dial("/run/berth/snapshotd.sock"));
//   auto removed = collector.Collect({"default"});
//
// Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "berth/snapshots/v1/collector.grpc.pb.h"
#include "lib/base/context.h"

namespace berth::snapshots {

class Collector {
 public:
  virtual ~Collector() = default;
  // One collection of ctx.ns: removes every snapshot nothing holds (gc.root labels, live
  // leases, gc.ref.snapshot labels on existing content) and returns their keys, children
  // first. Unavailable when the collector cannot learn the roots (nothing is removed then).
  virtual absl::StatusOr<std::vector<std::string>> Collect(const Context& ctx) = 0;
};

// Collector over one unary call; ctx's namespace and deadline go with it (its lease does not).
// Server errors keep their code and message; transport failures are Unavailable.
class GrpcCollector : public Collector {
 public:
  explicit GrpcCollector(std::shared_ptr<grpc::Channel> channel);
  GrpcCollector(const GrpcCollector&) = delete;
  GrpcCollector& operator=(const GrpcCollector&) = delete;

  absl::StatusOr<std::vector<std::string>> Collect(const Context& ctx) override;

 private:
  std::unique_ptr<::berth::snapshots::v1::Collector::Stub> stub_;
};

}  // namespace berth::snapshots
