// contentd: blobs by digest, ingests, leases and the namespace registry, served over
// containerd's Content, Leases and Namespaces APIs (DESIGN.md). Flags and config in, objects
// wired, serve until SIGTERM.

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "lib/base/logging.h"
#include "lib/config/config.h"
#include "lib/content/content_service.h"
#include "lib/events/nats_publisher.h"
#include "lib/server/daemon.h"
#include "lib/server/daemon_publisher.h"
#include "services/contentd/leases_service.h"
#include "services/contentd/collector_service.h"
#include "services/contentd/local_content_store.h"
#include "services/contentd/namespaces_service.h"

namespace {

int Run(int argc, char** argv) {
  // Before any thread starts (the NATS sender), so every thread inherits the blocked mask.
  berth::server::Daemon::BlockTerminationSignals();

  berth::config::DaemonConfig cfg("contentd", {});
  int64_t lease_expiry_seconds = 60;
  cfg.AddOption("--lease-expiry-interval", "lease_expiry_interval", &lease_expiry_seconds,
                "seconds between passes that release expired leases and collect what they "
                "held (0: never)");
  if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) {
    std::cerr << "contentd: " << st.message() << "\n";
    return 2;
  }
  const berth::config::CommonOptions& options = cfg.options();
  if (lease_expiry_seconds < 0) {
    std::cerr << "contentd: --lease-expiry-interval must not be negative\n";
    return 2;
  }
  if (absl::Status st =
          berth::SetLogLevel(options.log_level == "trace" ? "debug" : options.log_level);
      !st.ok()) {
    std::cerr << "contentd: " << st.message() << "\n";
    return 2;
  }

  berth::server::Daemon daemon(options);
  absl::StatusOr<std::unique_ptr<berth::events::NatsPublisher>> publisher =
      berth::server::OpenDaemonPublisher(options, daemon);
  if (!publisher.ok()) {
    BERTH_LOG(Error) << "contentd: " << publisher.status();
    return 1;
  }

  berth::contentd::StoreOptions store_options;
  store_options.root = options.root;
  store_options.publisher = publisher->get();
  store_options.lease_expiry_interval = absl::Seconds(lease_expiry_seconds);
  absl::StatusOr<std::unique_ptr<berth::contentd::LocalContentStore>> store =
      berth::contentd::LocalContentStore::Open(store_options);
  if (!store.ok()) {
    BERTH_LOG(Error) << "contentd: content store: " << store.status();
    return 1;
  }
  berth::contentd::LocalContentStore& local = **store;

  berth::content::ContentServiceOptions content_options;
  content_options.default_namespace = options.default_namespace;
  content_options.registry = daemon.metrics();
  content_options.stats = [&local] {
    berth::contentd::StoreStats stats = local.Stats();
    return berth::content::ContentStats{stats.blobs, stats.bytes};
  };
  berth::content::ContentService content_service(local, content_options);
  berth::contentd::LeasesService leases_service(local, options.default_namespace);
  berth::contentd::NamespacesService namespaces_service(local, publisher->get(),
                                                        options.default_namespace);
  // berth's extension: a full collection on demand (`berth content gc`).
  berth::contentd::CollectorService collector_service(
      [&local](const std::string& ns) -> absl::StatusOr<berth::contentd::CollectOutcome> {
        absl::StatusOr<berth::contentd::GcResult> gc = local.CollectNamespace(ns);
        if (!gc.ok()) {
          return gc.status();
        }
        return berth::contentd::CollectOutcome{gc->removed, gc->leases_expired,
                                               gc->ingests_removed};
      },
      options.default_namespace);

  daemon.AddService(&content_service);
  daemon.AddService(&leases_service);
  daemon.AddService(&namespaces_service);
  daemon.AddService(&collector_service);
  daemon.AddPlugin({"io.containerd.content.v1", "content"});
  daemon.AddPlugin({"io.containerd.lease.v1", "manager"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "content"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "leases"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "namespaces"});
  if (absl::Status st = daemon.Start(); !st.ok()) {
    BERTH_LOG(Error) << "contentd: " << st;
    return 1;
  }
  BERTH_LOG(Info) << "contentd serving on " << daemon.grpc_target() << ", root " << options.root;
  daemon.Wait();
  BERTH_LOG(Info) << "contentd stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
