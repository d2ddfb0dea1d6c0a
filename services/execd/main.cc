// execd: container records, served over containerd's Containers API (DESIGN.md, Execution).
// Tasks, the shim and the runtime come next. Flags and config in, objects wired, serve until
// SIGTERM.

#include <iostream>
#include <memory>
#include <string>

#include "lib/base/grpc_client.h"
#include "lib/base/logging.h"
#include "lib/config/config.h"
#include "lib/events/nats_publisher.h"
#include "lib/leases/leases_forwarder.h"
#include "lib/server/daemon.h"
#include "lib/server/daemon_publisher.h"
#include "services/execd/containers_service.h"
#include "services/execd/sqlite_container_store.h"

namespace {

int Run(int argc, char** argv) {
  // Before any thread starts (the NATS sender), so every thread inherits the blocked mask.
  berth::server::Daemon::BlockTerminationSignals();

  berth::config::DaemonConfig cfg("execd", {"contentd"});
  if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) {
    std::cerr << "execd: " << st.message() << "\n";
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
  berth::execd::ContainersService containers_service(local, containers_options);

  // Leases are contentd's; `ctr containers create` asks for one on this socket first.
  const std::string& contentd_address = options.peers.at("contentd");
  berth::leases::LeasesForwarder leases_forwarder(berth::Dial(contentd_address), contentd_address,
                                                  options.default_namespace);

  daemon.AddService(&containers_service);
  daemon.AddService(&leases_forwarder);
  daemon.AddPlugin({"io.containerd.grpc.v1", "containers"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "leases"});
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
