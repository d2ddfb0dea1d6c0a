#include "services/snapshotd/snapshot_collector.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"

namespace berth::snapshotd {

namespace {

// A deadline for the calls to contentd when the caller set none (the background loop).
Context CallContext(const Context& caller) {
  Context ctx = caller;
  ctx.lease.clear();
  ctx.proxy_consumer = false;  // berth asks contentd for the whole picture
  if (ctx.deadline == absl::InfiniteFuture()) {
    ctx.deadline = absl::Now() + absl::Minutes(5);
  }
  return ctx;
}

}  // namespace

SnapshotCollector::SnapshotCollector(LocalSnapshotter& snapshotter, leases::LeaseManager& leases,
                                     content::Manager& content, CollectorOptions options)
    : snapshotter_(snapshotter), leases_(leases), content_(content), options_(std::move(options)) {
  if (options_.registry != nullptr) {
    auto& runs = prometheus::BuildCounter()
                     .Name("berth_snapshotd_gc_collections_total")
                     .Help("Garbage collections of a namespace's snapshots, by result")
                     .Register(*options_.registry);
    ok_ = &runs.Add({{"result", "ok"}});
    failed_ = &runs.Add({{"result", "error"}});
    removed_ = &prometheus::BuildCounter()
                    .Name("berth_snapshotd_gc_snapshots_removed_total")
                    .Help("Snapshots removed by garbage collection")
                    .Register(*options_.registry)
                    .Add({});
  }
  snapshotter_.GuardProxyRemoves(
      [this](const Context& ctx, const std::string& key) { return CheckProxyRemove(ctx, key); });
  if (options_.interval > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Loop(); });
  }
}

SnapshotCollector::~SnapshotCollector() {
  snapshotter_.GuardProxyRemoves(nullptr);
  stop_.Notify();
  if (thread_.joinable()) {
    thread_.join();
  }
}

absl::StatusOr<GcRoots> SnapshotCollector::Roots(const Context& ctx) {
  GcRoots roots;
  BERTH_ASSIGN_OR_RETURN(std::set<std::string> recorded, snapshotter_.RecordedLeases(ctx));
  // Leases before content (see the header).
  BERTH_ASSIGN_OR_RETURN(std::vector<leases::Lease> live, leases_.List(ctx, {}));
  std::set<std::string> live_ids;
  const std::string resource_type = absl::StrCat("snapshots/", snapshotter_.kind());
  for (const leases::Lease& lease : live) {
    live_ids.insert(lease.id);
    absl::StatusOr<std::vector<leases::Resource>> resources = leases_.ListResources(ctx, lease.id);
    if (resources.status().code() == absl::StatusCode::kNotFound) {
      continue;  // deleted since the list: it holds nothing
    }
    BERTH_RETURN_IF_ERROR(resources.status());
    for (const leases::Resource& resource : *resources) {
      if (resource.type == resource_type) {
        roots.leased.insert(resource.id);
      }
    }
  }
  for (const std::string& lease : recorded) {
    if (live_ids.count(lease) == 0) {
      roots.gone_leases.insert(lease);
    }
  }
  BERTH_RETURN_IF_ERROR(content_.Walk(ctx, {}, [&](const content::Info& info) -> absl::Status {
    for (const auto& [key, value] : info.labels) {
      if (IsSnapshotRefLabel(key, snapshotter_.kind())) {
        roots.referenced.insert(value);
      }
    }
    return absl::OkStatus();
  }));
  return roots;
}

absl::StatusOr<std::vector<std::string>> SnapshotCollector::Collect(const Context& caller) {
  Context ctx = CallContext(caller);
  absl::MutexLock lock(&run_mu_);
  absl::StatusOr<GcRoots> roots = Roots(ctx);
  absl::StatusOr<std::vector<std::string>> removed =
      roots.ok() ? snapshotter_.CollectGarbage(ctx, *roots)
                 : absl::StatusOr<std::vector<std::string>>(roots.status());
  if (ok_ != nullptr) {
    (removed.ok() ? ok_ : failed_)->Increment();
    if (removed.ok()) {
      removed_->Increment(static_cast<double>(removed->size()));
    }
  }
  if (!removed.ok()) {
    return absl::Status(removed.status().code(),
                        absl::StrCat("collecting snapshots in ", ctx.ns, ": ",
                                     removed.status().message()));
  }
  return removed;
}

absl::Status SnapshotCollector::CheckProxyRemove(const Context& caller, const std::string& key) {
  Context ctx = CallContext(caller);
  absl::MutexLock lock(&run_mu_);
  absl::StatusOr<GcRoots> roots = Roots(ctx);
  if (!roots.ok()) {
    return absl::Status(roots.status().code(),
                        absl::StrCat("cannot tell whether berth holds snapshot ", key, ": ",
                                     roots.status().message()));
  }
  BERTH_ASSIGN_OR_RETURN(auto held, snapshotter_.HeldByBerth(ctx, *roots));
  if (auto it = held.find(key); it != held.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", key, " is in use by berth (", it->second,
                     "): a request without a namespace header cannot remove it"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SnapshotCollector::CollectAll() {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> namespaces, snapshotter_.Namespaces());
  int64_t total = 0;
  for (const std::string& ns : namespaces) {
    Context ctx;
    ctx.ns = ns;
    BERTH_ASSIGN_OR_RETURN(std::vector<std::string> removed, Collect(ctx));
    total += static_cast<int64_t>(removed.size());
  }
  return total;
}

void SnapshotCollector::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
    absl::StatusOr<int64_t> removed = CollectAll();
    if (!removed.ok()) {
      BERTH_LOG(Warn) << "snapshotd: background collection: " << removed.status();
    } else if (*removed > 0) {
      BERTH_LOG(Info) << "snapshotd: background collection removed " << *removed << " snapshots";
    }
  }
}

}  // namespace berth::snapshotd
