// LocalSnapshotter's garbage collection: a mark from the roots GcRoots and the snapshots' own
// records give, then one transaction deleting every unmarked record, children first, then the
// directories. The rules are in local_snapshotter.h (CollectGarbage) and snapshot_collector.h.

#include <algorithm>
#include <deque>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "containerd/events/snapshot.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "services/snapshotd/fs_util.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

namespace {

constexpr absl::string_view kGcRootLabel = "containerd.io/gc.root";
constexpr absl::string_view kGcRefSnapshotPrefix = "containerd.io/gc.ref.snapshot.";

}  // namespace

bool IsSnapshotRefLabel(absl::string_view key, absl::string_view snapshotter) {
  if (!absl::ConsumePrefix(&key, kGcRefSnapshotPrefix) || !absl::ConsumePrefix(&key, snapshotter)) {
    return false;
  }
  return key.empty() || key[0] == '/';
}

absl::StatusOr<std::set<std::string>> LocalSnapshotter::RecordedLeases(const Context& ctx) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(auto rows, meta_->AllLeaseResources(ctx.ns));
  std::set<std::string> leases;
  for (auto& [lease, key] : rows) {
    leases.insert(std::move(lease));
  }
  return leases;
}

absl::StatusOr<std::map<int64_t, std::string>> LocalSnapshotter::MarkLocked(
    const std::string& ns, const std::vector<SnapshotRecord>& records, const GcRoots& roots,
    bool proxy_owned_held) {
  BERTH_ASSIGN_OR_RETURN(auto lease_rows, meta_->AllLeaseResources(ns));
  std::map<std::string, std::vector<std::string>> leases_of;  // key -> leases
  for (auto& [lease, key] : lease_rows) {
    leases_of[key].push_back(lease);
  }
  std::map<std::string, const SnapshotRecord*> by_key;
  std::map<int64_t, const SnapshotRecord*> by_id;
  for (const SnapshotRecord& r : records) {
    by_key[r.info.name] = &r;
    by_id[r.id] = &r;
  }

  // Roots, with why each is held.
  struct Held {
    const SnapshotRecord* record;
    std::string why;
    bool inherited;  // `why` already names the root that needs it
  };
  std::deque<Held> queue;
  for (const SnapshotRecord& r : records) {
    const std::string& key = r.info.name;
    auto recorded = leases_of.find(key);
    std::string why;
    if (recorded != leases_of.end()) {
      for (const std::string& lease : recorded->second) {
        if (why.empty() && roots.gone_leases.count(lease) == 0) {
          why = absl::StrCat("lease \"", lease, "\" made it");
        }
      }
    }
    if (r.info.labels.count(std::string(kGcRootLabel)) != 0) {
      why = absl::StrCat("it carries ", kGcRootLabel);
    } else if (r.info.kind != snapshots::Kind::kCommitted && recorded == leases_of.end() &&
               !r.proxy_owned) {
      // (A proxy consumer's active snapshots are its own: held below, when they count.)
      why = "it is active and was made under no lease (a container's rootfs)";
    } else if (roots.leased.count(key) != 0) {
      why = "a lease in contentd holds it";
    } else if (roots.referenced.count(key) != 0) {
      why = "a gc.ref.snapshot label of a blob in contentd names it";
    } else if (why.empty() && proxy_owned_held && r.proxy_owned) {
      why = "a proxy consumer made or adopted it";
    }
    if (!why.empty()) {
      queue.push_back({&r, std::move(why), false});
    }
  }
  // Mark: parents and gc.ref.snapshot.<kind> labels, each with its root's reason.
  std::map<int64_t, std::string> marked;
  while (!queue.empty()) {
    Held held = std::move(queue.front());
    queue.pop_front();
    const SnapshotRecord* r = held.record;
    if (!marked.emplace(r->id, held.why).second) {
      continue;
    }
    std::string inherited =
        held.inherited ? held.why : absl::StrCat("\"", r->info.name, "\" needs it: ", held.why);
    if (auto parent = by_id.find(r->parent_id); parent != by_id.end()) {
      queue.push_back({parent->second, inherited, true});
    }
    for (const auto& [label, value] : r->info.labels) {
      if (IsSnapshotRefLabel(label, options_.kind)) {
        if (auto ref = by_key.find(value); ref != by_key.end()) {
          queue.push_back({ref->second, inherited, true});
        }
      }
    }
  }
  return marked;
}

absl::StatusOr<std::map<std::string, std::string>> LocalSnapshotter::HeldByBerth(
    const Context& ctx, const GcRoots& roots) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::vector<SnapshotRecord> records, meta_->List(ctx.ns));
  BERTH_ASSIGN_OR_RETURN(auto marked, MarkLocked(ctx.ns, records, roots, false));
  std::map<std::string, std::string> held;
  for (const SnapshotRecord& r : records) {
    if (auto it = marked.find(r.id); it != marked.end()) {
      held.emplace(r.info.name, std::move(it->second));
    }
  }
  return held;
}

absl::StatusOr<std::vector<std::string>> LocalSnapshotter::CollectGarbage(const Context& ctx,
                                                                          const GcRoots& roots) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  std::vector<std::pair<int64_t, std::string>> dead;  // (id, key), children first
  std::vector<std::string> aside;
  {
    absl::MutexLock lock(&mu_);
    BERTH_RETURN_IF_ERROR(meta_->Transaction([&]() -> absl::Status {
      BERTH_ASSIGN_OR_RETURN(std::vector<SnapshotRecord> records, meta_->List(ctx.ns));
      std::map<int64_t, const SnapshotRecord*> by_id;
      for (const SnapshotRecord& r : records) {
        by_id[r.id] = &r;
      }
      BERTH_ASSIGN_OR_RETURN(auto marked, MarkLocked(ctx.ns, records, roots, true));

      // Sweep, deepest first: a dead snapshot's children are dead too (a live one would have
      // marked it), so each record goes before its parent's.
      std::vector<std::pair<size_t, const SnapshotRecord*>> by_depth;
      for (const SnapshotRecord& r : records) {
        if (marked.count(r.id) == 0) {
          size_t depth = 0;
          for (auto p = by_id.find(r.parent_id); p != by_id.end();
               p = by_id.find(p->second->parent_id)) {
            ++depth;
          }
          by_depth.emplace_back(depth, &r);
        }
      }
      std::stable_sort(by_depth.begin(), by_depth.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      dead.clear();
      for (const auto& [depth, r] : by_depth) {
        BERTH_RETURN_IF_ERROR(meta_->Delete(r->id));
        BERTH_RETURN_IF_ERROR(meta_->DeleteLeaseResources(ctx.ns, r->info.name));
        dead.emplace_back(r->id, r->info.name);
      }
      if (!dead.empty() && options_.gc_hook) {
        options_.gc_hook("records-deleted");
      }
      return absl::OkStatus();
    }));
    // The records are gone: from here on the directories are garbage, whatever happens.
    for (const auto& [id, key] : dead) {
      absl::StatusOr<std::string> moved = MoveAside(absl::StrCat(id));
      if (!moved.ok()) {
        BERTH_LOG(Warn) << "snapshotd: collecting snapshot " << key << ": " << moved.status()
                        << " (Cleanup retries)";
        continue;
      }
      busy_.insert(*moved);
      aside.push_back(*moved);
    }
  }
  for (const std::string& name : aside) {
    if (absl::Status st = RemoveTree(absl::StrCat(SnapshotsDir(), "/", name)); !st.ok()) {
      BERTH_LOG(Warn) << "snapshotd: collecting " << name << ": " << st << " (Cleanup retries)";
    }
    {
      absl::MutexLock lock(&mu_);
      busy_.erase(name);
    }
    if (options_.gc_hook) {
      options_.gc_hook("dir-removed");
    }
  }
  std::vector<std::string> removed;
  for (auto& [id, key] : dead) {
    BERTH_LOG(Info) << "snapshotd: collected snapshot " << ctx.ns << "/" << key;
    containerd::events::SnapshotRemove event;
    event.set_key(key);
    Publish(ctx.ns, "/snapshot/remove", event);
    removed.push_back(std::move(key));
  }
  return removed;
}

}  // namespace berth::snapshotd
