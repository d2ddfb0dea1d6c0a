#pragma once

// The server bootstrap every daemon uses (DESIGN.md): a gRPC server on a unix socket created
// 0660 (or the socket systemd passed, LISTEN_FDS), grpc.health.v1.Health, containerd's Version
// and Introspection services, the metrics interceptor and a Prometheus /metrics endpoint,
// sd_notify READY=1 once serving and STOPPING=1 on the way down, graceful stop on SIGTERM/SIGINT.
//
//   berth::server::Daemon daemon(cfg.options());
//   daemon.AddService(&content_service);
//   daemon.AddPlugin({"io.containerd.content.v1", "content"});
//   if (auto st = daemon.Start(); !st.ok()) { log; return 1; }
//   daemon.Wait();   // returns after SIGTERM and a graceful drain

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "lib/config/config.h"

namespace berth::server {

// An entry in the Introspection service's plugin list.
struct PluginInfo {
  std::string type;  // "io.containerd.content.v1"
  std::string id;    // "content"
};

class Daemon {
 public:
  explicit Daemon(const config::CommonOptions& options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Before Start. The service must outlive the Daemon.
  void AddService(grpc::Service* service);
  void AddPlugin(PluginInfo plugin);
  // Shared with the stores so they can export their own gauges/counters (bytes ingested...).
  // Per-method request counts, error codes and latency histograms are recorded by the Daemon's
  // interceptor; services need not.
  std::shared_ptr<prometheus::Registry> metrics() { return registry_; }

  // Creates root and state dirs (0700), refuses a socket path it cannot own safely (an existing
  // non-socket file, or a live socket another process serves), binds the socket 0660, starts
  // /metrics, installs SIGTERM/SIGINT handling and notifies systemd. Errors name the path.
  absl::Status Start();
  // Blocks until SIGTERM/SIGINT or Shutdown(); then drains in-flight calls (bounded) and stops.
  void Wait();
  // Thread-safe; makes Wait() return.
  void Shutdown();
  // What grpc.health.v1.Health answers for every service while the daemon runs: SERVING from
  // Start on, until a daemon that depends on something outside says otherwise (eventd without
  // its bus). Thread-safe; ignored before Start and once stopping (then it is NOT_SERVING).
  void SetServing(bool serving);

  // Blocks SIGTERM and SIGINT in the calling thread, so that threads it spawns afterwards
  // inherit the mask and the Daemon's signal thread receives them. The constructor calls it;
  // call it first thing in main() when other threads (a NATS client, a thread pool) start
  // before the Daemon is constructed. (A signal that still reaches a thread not blocking it is
  // caught by a handler Start installs, so it never kills the process, but blocking is cleaner.)
  static void BlockTerminationSignals();
  // Sets glibc's allocator up for a daemon that moves large messages: blocks up to 8 MiB
  // from the heap, not one mmap each, and freed heap kept up to 64 MiB. The constructor calls
  // it; it is process-wide and may be called at any time.
  static void TuneAllocator();

  // The address actually bound, e.g. "unix:/run/berth/contentd.sock".
  std::string grpc_target() const;
  // "127.0.0.1:port" actually bound for metrics (useful with port 0), empty when off.
  std::string metrics_endpoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace berth::server
