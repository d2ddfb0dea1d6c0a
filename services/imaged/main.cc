// imaged: image records, served over containerd's Images API (DESIGN.md), and pulls from
// registries, pushes to them, and imports and exports of image tarballs over
// berth.distribution.v1 (into contentd and snapshotd). Flags and config in, objects wired,
// serve until SIGTERM.

#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/base/logging.h"
#include "lib/config/config.h"
#include "lib/images/hosts_config.h"
#include "lib/images/registry_credentials.h"
#include "lib/events/nats_publisher.h"
#include "lib/leases/leases_forwarder.h"
#include "lib/content/content_service.h"
#include "lib/content/grpc_content_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/namespaces/namespaces_forwarder.h"
#include "lib/server/daemon.h"
#include "lib/server/daemon_publisher.h"
#include "lib/snapshots/collector.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/snapshots/grpc_unpacker.h"
#include "lib/snapshots/snapshots_service.h"
#include "services/imaged/distribution_service.h"
#include "services/imaged/exporter.h"
#include "services/imaged/image_holds.h"
#include "services/imaged/images_service.h"
#include "services/imaged/importer.h"
#include "services/imaged/pull_metrics.h"
#include "services/imaged/puller.h"
#include "services/imaged/pusher.h"
#include "services/imaged/publishing_image_store.h"
#include "services/imaged/sqlite_image_store.h"

namespace {

// A killed imaged's pulls left leases on contentd (berth.io/pull) keeping their partial blobs
// for an hour: deleted in every namespace contentd knows. Waits up to 10 s for a contentd that
// is still starting, on a connection of its own (a failed attempt must not put the pulls'
// channel into reconnect backoff); warns and goes on when it cannot. Before that, `reconcile`
// is called with contentd's namespaces, so a record a pull wrote before imaged died is held
// before its pull's lease goes.
void ReleaseDeadPullLeases(
    const std::string& contentd_address,
    const std::function<void(const std::vector<std::string>&)>& reconcile) {
  std::shared_ptr<grpc::Channel> contentd = berth::DialOwnConnection(contentd_address);
  berth::leases::GrpcLeaseManager leases(contentd);
  berth::content::GrpcContentStore content(contentd);
  auto stub = containerd::services::namespaces::v1::Namespaces::NewStub(contentd);
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  containerd::services::namespaces::v1::ListNamespacesRequest request;
  containerd::services::namespaces::v1::ListNamespacesResponse response;
  if (absl::Status st = berth::FromGrpcStatus(stub->List(&context, request, &response));
      !st.ok()) {
    BERTH_LOG(Warn) << "imaged: cannot release dead pulls' leases: listing contentd's namespaces: "
                    << st;
    return;
  }
  std::vector<std::string> namespaces;
  for (const auto& ns : response.namespaces()) {
    namespaces.push_back(ns.name());
  }
  reconcile(namespaces);
  absl::StatusOr<std::vector<std::string>> released =
      berth::imaged::ReleasePullLeases(leases, content, namespaces);
  if (!released.ok()) {
    BERTH_LOG(Warn) << "imaged: releasing dead pulls' leases: " << released.status();
    return;
  }
  for (const std::string& lease : *released) {
    BERTH_LOG(Info) << "imaged: released lease " << lease << " of a pull that did not finish";
  }
}

int Run(int argc, char** argv) {
  // Before any thread starts (the NATS sender), so every thread inherits the blocked mask.
  berth::server::Daemon::BlockTerminationSignals();

  berth::config::DaemonConfig cfg("imaged", {"contentd", "snapshotd"});
  // Hosts reached over plain HTTP (when their hosts.toml names no server).
  std::vector<std::string> insecure_registries;
  cfg.app()
      .add_option("--insecure-registry", insecure_registries,
                  "Registry host (HOST[:PORT]) reached over plain HTTP; repeatable")
      ->take_all();
  berth::imaged::PullerOptions puller_options;
  cfg.app()
      .add_option("--max-concurrent-downloads", puller_options.max_parallel_downloads,
                  "Blobs one pull downloads at once (default: 2 per CPU, 4 to 16)")
      ->check(CLI::Range(1, 64));
  // Registry credentials (docker's config.json `auths`), read at each pull and push.
  std::string docker_config = berth::images::DefaultDockerConfigPath();
  cfg.AddOption("--docker-config", "docker_config", &docker_config,
                "docker-style config.json with registry credentials (auths); \"\" for none");
  // Pushes send a blob larger than this in chunks of this size (PATCH), a smaller one in one PUT.
  int64_t upload_chunk_size = int64_t{64} << 20;
  cfg.AddOption("--upload-chunk-size", "upload_chunk_size", &upload_chunk_size,
                "Bytes: pushed blobs larger than this are uploaded in chunks of this size");
  // Pulls fetch a blob with more than this many bytes left as parallel Range requests of this
  // size when the registry honours Range (0: one GET per blob).
  const berth::images::RegistryClientOptions registry_defaults;
  int64_t blob_chunk_size = registry_defaults.blob_chunk_size;
  cfg.AddOption("--blob-chunk-size", "blob_chunk_size", &blob_chunk_size,
                "Bytes: pulled blobs larger than this are fetched as parallel Range requests of "
                "this size when the registry allows it; 0 for one GET per blob");
  int64_t blob_parallel_chunks = registry_defaults.blob_parallel_chunks;
  cfg.AddOption("--blob-parallel-chunks", "blob_parallel_chunks", &blob_parallel_chunks,
                "Range requests of one blob in flight at once (1: one GET per blob)");
  int64_t blob_chunk_memory = registry_defaults.blob_chunk_memory;
  cfg.AddOption("--blob-chunk-memory", "blob_chunk_memory", &blob_chunk_memory,
                "Bytes of fetched chunks held in memory at most, over all pulls (0: chunk size "
                "x parallel chunks)");
  int64_t import_max_entries = berth::imaged::ImporterOptions().limits.max_entries;
  int64_t import_max_bytes = berth::imaged::ImporterOptions().limits.max_bytes;
  cfg.app().add_option("--import-max-entries", import_max_entries,
                       "Most entries an imported tarball may hold");
  cfg.app().add_option("--import-max-bytes", import_max_bytes,
                       "Most bytes of file data an imported tarball may hold");
  std::string hosts_dir = "/etc/berth/certs.d";
  cfg.AddOption("--hosts-dir", "hosts_dir", &hosts_dir,
                "containerd's registry hosts directory: <dir>/<host>/hosts.toml (mirrors, TLS, "
                "capabilities), read at start");
  if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) {
    std::cerr << "imaged: " << st.message() << "\n";
    return 2;
  }
  const berth::config::CommonOptions& options = cfg.options();
  if (absl::Status st =
          berth::SetLogLevel(options.log_level == "trace" ? "debug" : options.log_level);
      !st.ok()) {
    std::cerr << "imaged: " << st.message() << "\n";
    return 2;
  }

  // Before anything is opened or created: a malformed hosts.toml stops imaged here.
  absl::StatusOr<std::map<std::string, std::vector<berth::images::RegistryEndpoint>>> host_dirs =
      berth::images::LoadHostsDir(hosts_dir);
  if (!host_dirs.ok()) {
    BERTH_LOG(Error) << "imaged: hosts dir " << hosts_dir << ": " << host_dirs.status();
    return 1;
  }
  for (const auto& [name, endpoints] : *host_dirs) {
    BERTH_LOG(Info) << "imaged: registry host " << name << ": " << endpoints.size()
                    << " endpoint(s) from " << hosts_dir << "/" << name;
  }

  berth::server::Daemon daemon(options);
  absl::StatusOr<std::unique_ptr<berth::events::NatsPublisher>> publisher =
      berth::server::OpenDaemonPublisher(options, daemon);
  if (!publisher.ok()) {
    BERTH_LOG(Error) << "imaged: " << publisher.status();
    return 1;
  }

  absl::StatusOr<std::unique_ptr<berth::imaged::SqliteImageStore>> store =
      berth::imaged::SqliteImageStore::Open(options.root + "/images.db");
  if (!store.ok()) {
    BERTH_LOG(Error) << "imaged: image store: " << store.status();
    return 1;
  }
  berth::imaged::SqliteImageStore& local = **store;

  berth::imaged::ImagesServiceOptions images_options;
  images_options.default_namespace = options.default_namespace;
  images_options.publisher = publisher->get();
  images_options.registry = daemon.metrics();
  images_options.count = [&local] { return local.Count(); };
  // Leases are contentd's; ctr and containerd's clients ask for one on this socket first.
  const std::string& contentd_address = options.peers.at("contentd");
  auto contentd_channel = berth::Dial(contentd_address);
  auto snapshotd_channel = berth::Dial(options.peers.at("snapshotd"));
  berth::leases::GrpcLeaseManager leases(contentd_channel);
  // Each record holds its target with a lease on contentd; deletes trigger snapshotd's GC.
  berth::snapshots::GrpcCollector snapshot_collector(snapshotd_channel);
  berth::content::GrpcContentStore content(contentd_channel);
  berth::imaged::HoldingImageStore holding(local, leases, &snapshot_collector, &content);
  berth::imaged::ImagesService images_service(holding, images_options);
  berth::leases::LeasesForwarder leases_forwarder(berth::Dial(contentd_address), contentd_address,
                                                  options.default_namespace);
  // Namespaces too: containerd's clients read a namespace's labels (its default snapshotter).
  berth::namespaces::NamespacesForwarder namespaces_forwarder(
      berth::Dial(contentd_address), contentd_address, options.default_namespace);

  // Pulls write to contentd and unpack through snapshotd under a lease taken on contentd.
  berth::snapshots::GrpcUnpacker unpacker(snapshotd_channel);
  // Pulled records announce themselves as the Images service's do: /images/create|update.
  berth::imaged::PublishingImageStore pulled_records(holding, **publisher);
  berth::imaged::Puller puller(content, leases, &unpacker, pulled_records, puller_options);
  berth::imaged::PullMetrics pull_metrics(*daemon.metrics());
  berth::images::RegistryClientOptions registry_options;
  registry_options.host_dirs = *std::move(host_dirs);
  for (const std::string& host : insecure_registries) {
    registry_options.hosts[host].plain_http = true;
  }
  if (upload_chunk_size <= 0) {
    BERTH_LOG(Error) << "imaged: --upload-chunk-size must be positive";
    return 2;
  }
  if (blob_chunk_size < 0 || blob_parallel_chunks < 1 || blob_parallel_chunks > 64 ||
      blob_chunk_memory < 0) {
    BERTH_LOG(Error) << "imaged: --blob-chunk-size and --blob-chunk-memory must be 0 or more, "
                        "--blob-parallel-chunks 1 to 64";
    return 2;
  }
  registry_options.blob_chunk_size = blob_chunk_size;
  registry_options.blob_parallel_chunks = static_cast<int>(blob_parallel_chunks);
  registry_options.blob_chunk_memory = blob_chunk_memory;
  registry_options.chunked_upload_threshold = upload_chunk_size;
  registry_options.upload_chunk_size = upload_chunk_size;
  registry_options.on_response = [&pull_metrics](absl::string_view host, int status) {
    pull_metrics.ObserveResponse(host, status);
  };
  registry_options.on_connection = [&pull_metrics](absl::string_view host, int http_version) {
    pull_metrics.ObserveConnection(host, http_version);
  };
  berth::imaged::Pusher pusher(content, local);
  berth::imaged::DistributionService distribution_service(
      puller, std::move(registry_options), options.default_namespace, &pull_metrics, &pusher,
      docker_config);

  // Imports and exports of image tarballs, over the same stores as pulls.
  berth::imaged::ImporterOptions importer_options;
  importer_options.limits.max_entries = import_max_entries;
  importer_options.limits.max_bytes = import_max_bytes;
  berth::imaged::Importer importer(content, leases, &unpacker, pulled_records, importer_options);
  berth::imaged::Exporter exporter(content, local);
  distribution_service.ServeArchives(&importer, &exporter);

  ReleaseDeadPullLeases(contentd_address, [&](const std::vector<std::string>& contentd_namespaces) {
    std::set<std::string> namespaces(contentd_namespaces.begin(), contentd_namespaces.end());
    if (absl::StatusOr<std::vector<std::string>> own = local.Namespaces(); own.ok()) {
      namespaces.insert(own->begin(), own->end());
    }
    absl::StatusOr<int> repaired = holding.Reconcile({namespaces.begin(), namespaces.end()});
    if (!repaired.ok()) {
      BERTH_LOG(Warn) << "imaged: reconciling image records with their leases: "
                      << repaired.status();
    }
  });

  // The content and snapshots the records name, served from contentd and snapshotd on this
  // socket too, so ctr and containerd's Go client pointed at imaged alone can read an image
  // (`ctr images check`, ls's sizes). No metrics of their own: contentd counts the content.
  berth::content::ContentService content_service(
      content, berth::content::ContentServiceOptions{options.default_namespace, nullptr, {}});
  berth::snapshots::GrpcSnapshotter snapshotter(snapshotd_channel, "overlayfs");
  berth::snapshots::SnapshotsService snapshots_service(
      snapshotter, berth::snapshots::SnapshotsServiceOptions{options.default_namespace});

  daemon.AddService(&images_service);
  daemon.AddService(&leases_forwarder);
  daemon.AddService(&namespaces_forwarder);
  daemon.AddService(&distribution_service);
  daemon.AddService(&content_service);
  daemon.AddService(&snapshots_service);
  daemon.AddPlugin({"io.containerd.grpc.v1", "images"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "namespaces"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "content"});
  daemon.AddPlugin({"io.containerd.grpc.v1", "snapshots"});
  if (absl::Status st = daemon.Start(); !st.ok()) {
    BERTH_LOG(Error) << "imaged: " << st;
    return 1;
  }
  BERTH_LOG(Info) << "imaged serving on " << daemon.grpc_target() << ", root " << options.root;
  daemon.Wait();
  BERTH_LOG(Info) << "imaged stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
