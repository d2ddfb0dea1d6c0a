#pragma once

// snapshotd's garbage collector, with contentd's rules (local_gc.cc there) for snapshots:
// containerd collects in one process, here leases and image content live in contentd, so a
// collection first asks contentd (through the leases and content contracts) for the roots.
//
// One collection of a namespace:
//  1. reads the leases snapshotd recorded there (LocalSnapshotter::RecordedLeases);
//  2. lists contentd's leases: a recorded lease contentd no longer has is gone; the resources
//     of type "snapshots/<snapshotter>" of the live ones are held;
//  3. walks contentd's content: a containerd.io/gc.ref.snapshot.<snapshotter> label on any blob
//     that exists (an image config, say) holds the snapshot it names;
//  4. LocalSnapshotter::CollectGarbage marks from those roots, the gc.root labels and the
//     snapshots' own lease records (an active snapshot made under no lease stays: it is a
//     container's rootfs, whose record lives in execd), and removes the rest.
// Leases are read before content: a pull stores its config (naming its snapshot chain) before
// it deletes the lease that held the chain, so whichever the collection sees, the chain is held.
// When contentd cannot be asked, nothing is removed (the error is returned).
//
// Sharing a namespace with a containerd that uses snapshotd as its proxy snapshotter: its
// requests carry no namespace header (Context::proxy_consumer) and it removes, through the
// proxy, every snapshot its own metadata does not name. While the collector lives, such a
// Remove of a snapshot berth holds (by the rules above, a proxy consumer's own snapshots not
// counted) is refused with FailedPrecondition naming the holder, which containerd's collection
// logs and skips; and what a proxy consumer made, committed or adopted is held (it is removed
// only by an explicit Remove).
//
// Metrics (with a registry): berth_snapshotd_gc_collections_total{result="ok"|"error"} and
// berth_snapshotd_gc_snapshots_removed_total.
//
// Thread-safe; collections run one at a time.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/content/content_store.h"
#include "lib/leases/lease_manager.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

struct CollectorOptions {
  // Between background collections of every namespace; zero: none (collections run when asked).
  absl::Duration interval = absl::ZeroDuration();
  std::shared_ptr<prometheus::Registry> registry;  // null: no metrics
};

class SnapshotCollector {
 public:
  // The references must outlive the collector. Guards the snapshotter's proxy Removes (see
  // above) until destroyed; starts the background thread when options.interval > 0.
  SnapshotCollector(LocalSnapshotter& snapshotter, leases::LeaseManager& leases,
                    content::Manager& content, CollectorOptions options);
  // Stops the background thread (waits for a collection in progress).
  ~SnapshotCollector();
  SnapshotCollector(const SnapshotCollector&) = delete;
  SnapshotCollector& operator=(const SnapshotCollector&) = delete;

  // Collects ctx.ns; returns the keys removed, children first. ctx.lease is ignored.
  absl::StatusOr<std::vector<std::string>> Collect(const Context& ctx);
  // Collects every namespace snapshotd holds; returns how many snapshots went. Stops at the
  // first error.
  absl::StatusOr<int64_t> CollectAll();
  // OK unless berth holds `key` in ctx.ns (FailedPrecondition naming why) or contentd cannot
  // be asked (its error). Installed as the snapshotter's proxy Remove guard.
  absl::Status CheckProxyRemove(const Context& ctx, const std::string& key);

 private:
  absl::StatusOr<GcRoots> Roots(const Context& ctx);
  void Loop();

  LocalSnapshotter& snapshotter_;
  leases::LeaseManager& leases_;
  content::Manager& content_;
  const CollectorOptions options_;
  absl::Mutex run_mu_;  // held through a collection
  prometheus::Counter* ok_ = nullptr;
  prometheus::Counter* failed_ = nullptr;
  prometheus::Counter* removed_ = nullptr;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace berth::snapshotd
