#pragma once

// A snapshots::Snapshotter backed by a snapshotd (or any containerd Snapshots service, such as
// containerd itself) over gRPC. Code holding a Snapshotter& cannot tell it from a local
// snapshotter: both pass snapshotter_testsuite.h. Every request carries `snapshotter_name` in
// its `snapshotter` field (containerd serves several snapshotters and picks one by it;
// snapshotd serves one and accepts any name). Each call sends ctx as the
// `containerd-namespace` and `containerd-lease` metadata headers; server errors come back with
// their code and message unchanged, and transport failures are Unavailable.
//
//   berth::snapshots::GrpcSnapshotter snapshotter(berth::Dial("/run/berth/snapshotd.sock"),
//                                                 "overlayfs");
//   auto mounts = snapshotter.Prepare({"default", lease}, "work", "layer-3", {});
//
// Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "lib/snapshots/snapshotter.h"

namespace berth::snapshots {

class GrpcSnapshotter : public Snapshotter {
 public:
  GrpcSnapshotter(std::shared_ptr<grpc::Channel> channel, std::string snapshotter_name);
  GrpcSnapshotter(const GrpcSnapshotter&) = delete;
  GrpcSnapshotter& operator=(const GrpcSnapshotter&) = delete;

  absl::StatusOr<Info> Stat(const Context& ctx, const std::string& key) override;
  absl::StatusOr<Info> Update(const Context& ctx, const Info& info,
                              const std::vector<std::string>& fieldpaths) override;
  absl::StatusOr<Usage> GetUsage(const Context& ctx, const std::string& key) override;
  absl::StatusOr<std::vector<mount::Mount>> Mounts(const Context& ctx,
                                                   const std::string& key) override;
  absl::StatusOr<std::vector<mount::Mount>> Prepare(const Context& ctx, const std::string& key,
                                                    const std::string& parent,
                                                    const Labels& labels) override;
  absl::StatusOr<std::vector<mount::Mount>> View(const Context& ctx, const std::string& key,
                                                 const std::string& parent,
                                                 const Labels& labels) override;
  absl::Status Commit(const Context& ctx, const std::string& name, const std::string& key,
                      const Labels& labels) override;
  absl::Status Remove(const Context& ctx, const std::string& key) override;
  // One List stream; `fn` runs as the blocks arrive. An error from `fn` cancels the stream and
  // is returned as is.
  absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                    const std::function<absl::Status(const Info&)>& fn) override;
  absl::Status Cleanup(const Context& ctx) override;

  const std::string& snapshotter_name() const { return name_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::containerd::services::snapshots::v1::Snapshots::Stub> stub_;
  const std::string name_;
};

}  // namespace berth::snapshots
