// snapshotd: layered filesystems (overlayfs or the copying "native" snapshotter) and layer
// diffs, served over containerd's Snapshots and Diff APIs (DESIGN.md). Flags and config in,
// objects wired, serve until SIGTERM.

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_client.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/config/config.h"
#include "lib/content/grpc_content_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/events/nats_publisher.h"
#include "lib/server/daemon.h"
#include "lib/server/daemon_publisher.h"
#include "lib/snapshots/snapshots_service.h"
#include "services/snapshotd/collector_service.h"
#include "services/snapshotd/diff_applier.h"
#include "services/snapshotd/diff_service.h"
#include "services/snapshotd/parallel_unpacker.h"
#include "services/snapshotd/snapshot_collector.h"
#include "services/snapshotd/snapshotter_factory.h"
#include "services/snapshotd/unpack_service.h"
#include "services/snapshotd/walking_differ.h"

namespace {

int Run(int argc, char** argv) {
  // Before any thread starts (the NATS sender, the differ's pipelines), so every thread
  // inherits the blocked mask.
  berth::server::Daemon::BlockTerminationSignals();

  berth::config::DaemonConfig cfg("snapshotd", {"contentd"});
  std::string snapshotter_kind = "overlayfs";
  bool allow_devices = true;
  int64_t max_layer_size = int64_t{64} << 30;
  int64_t gc_interval = 0;
  cfg.AddOption("--snapshotter", "snapshotter", &snapshotter_kind,
                "overlayfs (layers as overlay lower dirs) or native (a full copy per snapshot)");
  cfg.AddOption("--allow-devices", "allow_devices", &allow_devices,
                "let layers create character and block device nodes");
  cfg.AddOption("--max-layer-size", "max_layer_size", &max_layer_size,
                "the most bytes one layer may decompress to (0: no limit)");
  cfg.AddOption("--gc-interval", "gc_interval", &gc_interval,
                "seconds between background collections of every namespace's snapshots "
                "(0: only when asked, by imaged's sync delete or berth snapshot gc)");
  if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) {
    std::cerr << "snapshotd: " << st.message() << "\n";
    return 2;
  }
  const berth::config::CommonOptions& options = cfg.options();
  if (snapshotter_kind == "overlay") {
    snapshotter_kind = "overlayfs";
  }
  if (snapshotter_kind != "overlayfs" && snapshotter_kind != "native") {
    std::cerr << "snapshotd: --snapshotter must be overlayfs or native, not \""
              << snapshotter_kind << "\"\n";
    return 2;
  }
  if (gc_interval < 0) {
    std::cerr << "snapshotd: --gc-interval must not be negative\n";
    return 2;
  }
  if (max_layer_size < 0) {
    std::cerr << "snapshotd: --max-layer-size must not be negative\n";
    return 2;
  }
  if (absl::Status st =
          berth::SetLogLevel(options.log_level == "trace" ? "debug" : options.log_level);
      !st.ok()) {
    std::cerr << "snapshotd: " << st.message() << "\n";
    return 2;
  }

  berth::server::Daemon daemon(options);
  const std::string scratch_dir = options.state + "/scratch";
  for (const auto& [dir, mode] : {std::pair<std::string, mode_t>{options.root, 0700},
                                  {options.state, 0700},
                                  {scratch_dir, 0700}}) {
    if (absl::Status st = berth::MakeDirs(dir, mode); !st.ok()) {
      BERTH_LOG(Error) << "snapshotd: " << st;
      return 1;
    }
  }

  absl::StatusOr<std::unique_ptr<berth::events::NatsPublisher>> publisher =
      berth::server::OpenDaemonPublisher(options, daemon);
  if (!publisher.ok()) {
    BERTH_LOG(Error) << "snapshotd: " << publisher.status();
    return 1;
  }

  // Opening runs Cleanup: whatever a crash left half-made is gone before the first request.
  berth::snapshotd::SnapshotterOptions snapshotter_options;
  snapshotter_options.root = options.root;
  snapshotter_options.kind = snapshotter_kind;
  snapshotter_options.publisher = publisher->get();
  absl::StatusOr<std::unique_ptr<berth::snapshotd::LocalSnapshotter>> snapshotter =
      berth::snapshotd::OpenLocalSnapshotter(snapshotter_options);
  if (!snapshotter.ok()) {
    BERTH_LOG(Error) << "snapshotd: " << snapshotter_kind << " snapshotter: "
                     << snapshotter.status();
    return 1;
  }

  // contentd is dialed lazily (a gRPC channel connects on its first call): snapshots work
  // without it, only Apply and Diff fail (Unavailable) while it is away.
  const std::string contentd_address = options.peers.at("contentd");
  auto contentd_channel = berth::Dial(contentd_address);
  berth::content::GrpcContentStore content(contentd_channel);
  berth::snapshotd::LayerApplierOptions applier_options;
  applier_options.whiteouts = snapshotter_kind == "native"
                                  ? berth::snapshotd::LayerApplierOptions::Whiteouts::kNative
                                  : berth::snapshotd::LayerApplierOptions::Whiteouts::kOverlay;
  applier_options.allow_devices = allow_devices;
  applier_options.max_uncompressed_size = max_layer_size;
  berth::snapshotd::LayerApplier applier(content, applier_options);
  berth::snapshotd::WalkingDifferOptions differ_options;
  differ_options.scratch_dir = scratch_dir;
  berth::snapshotd::WalkingDiffer differ(content, differ_options);

  berth::snapshots::SnapshotsService snapshots_service(
      **snapshotter, berth::snapshots::SnapshotsServiceOptions{options.default_namespace});
  berth::snapshotd::DiffService diff_service(applier, differ, options.default_namespace);
  // berth's extension: a whole chain in one call, its layers applied in parallel (overlay).
  berth::snapshotd::ParallelUnpacker unpacker(**snapshotter, applier);
  // An unpack killed halfway left active snapshots no client knows: they go before serving.
  if (absl::StatusOr<int> removed = unpacker.RemoveLeftovers(); !removed.ok()) {
    BERTH_LOG(Warn) << "snapshotd: removing what interrupted unpacks left: " << removed.status();
  }
  berth::snapshotd::UnpackService unpack_service(unpacker, options.default_namespace);
  // Garbage collection: leases and image content (gc.ref.snapshot labels) learned from contentd.
  berth::leases::GrpcLeaseManager leases(contentd_channel);
  berth::snapshotd::CollectorOptions collector_options;
  collector_options.interval = absl::Seconds(gc_interval);
  collector_options.registry = daemon.metrics();
  berth::snapshotd::SnapshotCollector collector(**snapshotter, leases, content,
                                                collector_options);
  berth::snapshotd::CollectorService collector_service(collector, options.default_namespace);

  daemon.AddService(&snapshots_service);
  daemon.AddService(&diff_service);
  daemon.AddService(&unpack_service);
  daemon.AddService(&collector_service);
  daemon.AddPlugin({"io.containerd.snapshotter.v1", snapshotter_kind});
  daemon.AddPlugin({"io.containerd.differ.v1", "walking"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "snapshots"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "diff"});
  if (absl::Status st = daemon.Start(); !st.ok()) {
    BERTH_LOG(Error) << "snapshotd: " << st;
    return 1;
  }
  BERTH_LOG(Info) << "snapshotd serving " << snapshotter_kind << " on " << daemon.grpc_target()
                  << ", root " << options.root << ", contentd at " << contentd_address;
  daemon.Wait();
  BERTH_LOG(Info) << "snapshotd stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
