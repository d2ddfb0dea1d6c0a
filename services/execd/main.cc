// execd: container records and tasks, served over containerd's Containers and Tasks APIs
// (DESIGN.md, Execution): one berth-shim per task runs the OCI runtime (--runtime, runc by
// default). Flags and config in, objects wired, reattach to the shims, serve until SIGTERM.

#include <unistd.h>

#include <climits>
#include <iostream>
#include <memory>
#include <string>

#include "lib/base/grpc_client.h"
#include "lib/base/logging.h"
#include "lib/config/config.h"
#include "lib/events/nats_publisher.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/leases/leases_forwarder.h"
#include "lib/namespaces/namespaces_forwarder.h"
#include "lib/server/daemon.h"
#include "lib/server/daemon_publisher.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/snapshots/snapshots_service.h"
#include "services/execd/container_holds.h"
#include "services/execd/containers_service.h"
#include "services/execd/sqlite_container_store.h"
#include "services/execd/task_manager.h"
#include "services/execd/task_records.h"
#include "services/execd/tasks_service.h"

namespace {

// berth-shim beside execd's own binary (a build tree or /usr/local/bin), else from PATH.
std::string DefaultShim() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, n);
    dir = dir.substr(0, dir.rfind('/'));
    std::string beside = dir + "/berth-shim";
    if (::access(beside.c_str(), X_OK) == 0) {
      return beside;
    }
  }
  return "berth-shim";
}

int Run(int argc, char** argv) {
  // Before any thread starts (the NATS sender), so every thread inherits the blocked mask.
  berth::server::Daemon::BlockTerminationSignals();

  berth::config::DaemonConfig cfg("execd", {"contentd", "snapshotd"});
  std::string runtime = "runc";
  std::string shim = DefaultShim();
  cfg.AddOption("--runtime", "runtime", &runtime,
                "the OCI runtime binary (a path, or a name in PATH) for containers whose "
                "runtime is containerd's (io.containerd.*)");
  cfg.AddOption("--shim", "shim", &shim, "the berth-shim binary");
  int64_t reattach_timeout_ms = 5000;
  cfg.AddOption("--reattach-timeout-ms", "reattach_timeout_ms", &reattach_timeout_ms,
                "after a restart, how long a shim may take to answer before its task is "
                "reported UNKNOWN (it is asked again in rounds of this length)");
  if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) {
    std::cerr << "execd: " << st.message() << "\n";
    return 2;
  }
  if (reattach_timeout_ms <= 0) {
    std::cerr << "execd: --reattach-timeout-ms must be positive, not " << reattach_timeout_ms
              << "\n";
    return 2;
  }
  const berth::config::CommonOptions& options = cfg.options();
  if (absl::Status st =
          berth::SetLogLevel(options.log_level == "trace" ? "debug" : options.log_level);
      !st.ok()) {
    std::cerr << "execd: " << st.message() << "\n";
    return 2;
  }

  berth::server::Daemon daemon(options);
  absl::StatusOr<std::unique_ptr<berth::events::NatsPublisher>> publisher =
      berth::server::OpenDaemonPublisher(options, daemon);
  if (!publisher.ok()) {
    BERTH_LOG(Error) << "execd: " << publisher.status();
    return 1;
  }

  absl::StatusOr<std::unique_ptr<berth::execd::SqliteContainerStore>> store =
      berth::execd::SqliteContainerStore::Open(options.root + "/containers.db");
  if (!store.ok()) {
    BERTH_LOG(Error) << "execd: container store: " << store.status();
    return 1;
  }
  berth::execd::SqliteContainerStore& local = **store;

  berth::execd::ContainersServiceOptions containers_options;
  containers_options.default_namespace = options.default_namespace;
  containers_options.publisher = publisher->get();
  containers_options.registry = daemon.metrics();
  containers_options.count = [&local] { return local.Count(); };
  // A record with a snapshot key holds it with a lease on contentd, as snapshotd's collector
  // learns its roots there (containerd's client deletes the lease it prepared it under).
  berth::leases::GrpcLeaseManager container_leases(berth::Dial(options.peers.at("contentd")));
  berth::execd::HoldingContainerStore holding(local, container_leases);
  if (absl::StatusOr<std::vector<std::string>> namespaces = local.Namespaces(); namespaces.ok()) {
    // A crash between a record and its lease lost the lease: hold the snapshot again.
    absl::StatusOr<int> held = holding.Reconcile(*namespaces);
    if (!held.ok()) {
      BERTH_LOG(Warn) << "execd: holding the records' snapshots with their leases on contentd: "
                      << held.status();
    }
  }
  berth::execd::ContainersService containers_service(holding, containers_options);

  absl::StatusOr<std::unique_ptr<berth::execd::TaskRecords>> records =
      berth::execd::TaskRecords::Open(options.root + "/tasks.db");
  if (!records.ok()) {
    BERTH_LOG(Error) << "execd: task records: " << records.status();
    return 1;
  }
  berth::execd::TaskManagerOptions task_options;
  task_options.state_dir = options.state;
  task_options.shim_binary = shim;
  task_options.default_runtime = runtime;
  task_options.reattach_timeout = absl::Milliseconds(reattach_timeout_ms);
  task_options.publisher = publisher->get();
  task_options.registry = daemon.metrics();
  berth::execd::TaskManager tasks(local, **records, task_options);
  if (absl::Status st = tasks.Recover(); !st.ok()) {
    BERTH_LOG(Error) << "execd: reattaching to tasks: " << st;
    return 1;
  }
  berth::execd::TasksService tasks_service(tasks, options.default_namespace);

  // Leases are contentd's; `ctr containers create` asks for one on this socket first.
  const std::string& contentd_address = options.peers.at("contentd");
  berth::leases::LeasesForwarder leases_forwarder(berth::Dial(contentd_address), contentd_address,
                                                  options.default_namespace);
  // Namespaces too: containerd's clients read a namespace's labels (its default snapshotter).
  berth::namespaces::NamespacesForwarder namespaces_forwarder(
      berth::Dial(contentd_address), contentd_address, options.default_namespace);

  // The snapshots that container records name (snapshot_key), served from snapshotd on this
  // socket too: `ctr containers rm` and the Go client's WithSnapshotCleanup remove a
  // container's snapshot through the socket they were pointed at.
  berth::snapshots::GrpcSnapshotter snapshotter(berth::Dial(options.peers.at("snapshotd")),
                                                "overlayfs");
  berth::snapshots::SnapshotsService snapshots_service(
      snapshotter, berth::snapshots::SnapshotsServiceOptions{options.default_namespace});

  daemon.AddService(&containers_service);
  daemon.AddService(&leases_forwarder);
  daemon.AddService(&namespaces_forwarder);
  daemon.AddService(&tasks_service);
  daemon.AddService(&snapshots_service);
  daemon.AddPlugin({"io.containerd.grpc.v1", "containers"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "leases"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "tasks"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "namespaces"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "snapshots"});
  if (absl::Status st = daemon.Start(); !st.ok()) {
    BERTH_LOG(Error) << "execd: " << st;
    return 1;
  }
  BERTH_LOG(Info) << "execd serving on " << daemon.grpc_target() << ", root " << options.root;
  daemon.Wait();
  BERTH_LOG(Info) << "execd stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
