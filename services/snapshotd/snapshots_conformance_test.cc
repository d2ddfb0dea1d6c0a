// snapshotter_testsuite.h through the wire: GrpcSnapshotter talking to the real Snapshots
// service (in-process, on a unix socket in a temp dir) over each local snapshotter. The same
// suite runs on the local snapshotters directly (snapshotter_test.cc); passing both proves the
// wire loses nothing.

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "lib/base/grpc_client.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/snapshots/snapshots_service.h"
#include "lib/snapshots/snapshotter_testsuite.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/snapshotter_factory.h"

namespace berth::snapshotd {
namespace {

using snapshots::SnapshotsService;
using snapshots::SnapshotsServiceOptions;

template <const char* kKind>
class GrpcHarness {
 public:
  GrpcHarness() {
    SnapshotterOptions options;
    options.root = dir_.Join("root");
    options.kind = kKind;
    absl::StatusOr<std::unique_ptr<snapshots::Snapshotter>> local = OpenSnapshotter(options);
    if (!local.ok()) {
      ADD_FAILURE() << "OpenSnapshotter(" << kKind << "): " << local.status();
      std::abort();
    }
    local_ = *std::move(local);
    service_ = std::make_unique<SnapshotsService>(*local_, SnapshotsServiceOptions{"default"});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("snapshots.sock"),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) {
      ADD_FAILURE() << "the snapshots service did not start on " << dir_.Join("snapshots.sock");
      std::abort();
    }
    client_ = std::make_unique<snapshots::GrpcSnapshotter>(Dial(dir_.Join("snapshots.sock")),
                                                           kKind);
  }
  ~GrpcHarness() {
    server_->Shutdown();
    client_.reset();
    local_.reset();
  }

  snapshots::Snapshotter& snapshotter() { return *client_; }
  static constexpr bool kCopiesParent = std::string_view(kKind) == "native";

 private:
  testing::TempDir dir_;
  std::unique_ptr<snapshots::Snapshotter> local_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<snapshots::GrpcSnapshotter> client_;
};

constexpr char kOverlay[] = "overlayfs";
constexpr char kNative[] = "native";
using GrpcOverlayHarness = GrpcHarness<kOverlay>;
using GrpcNativeHarness = GrpcHarness<kNative>;

}  // namespace
}  // namespace berth::snapshotd

namespace berth::snapshots {

INSTANTIATE_TYPED_TEST_SUITE_P(GrpcOverlay, SnapshotterTest,
                               ::testing::Types<snapshotd::GrpcOverlayHarness>);
INSTANTIATE_TYPED_TEST_SUITE_P(GrpcNative, SnapshotterTest,
                               ::testing::Types<snapshotd::GrpcNativeHarness>);

}  // namespace berth::snapshots
