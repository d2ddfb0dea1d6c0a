// LocalSnapshotter: Prepare, View and PrepareDetached, a new snapshot made in steps: check the
// key and parent, fill a tmp-* directory, then record it and rename the directory into place
// in one transaction (the crash rule in local_snapshotter.h).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "containerd/events/snapshot.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "services/snapshotd/fs_util.h"
#include "services/snapshotd/local_snapshotter.h"

namespace berth::snapshotd {

namespace {

absl::Status ValidateNs(const Context& ctx) { return ValidateNamespace(ctx.ns); }

}  // namespace

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::Prepare(
    const Context& ctx, const std::string& key, const std::string& parent,
    const snapshots::Labels& labels) {
  return Create(ctx, key, parent, labels, snapshots::Kind::kActive);
}

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::View(const Context& ctx,
                                                                 const std::string& key,
                                                                 const std::string& parent,
                                                                 const snapshots::Labels& labels) {
  return Create(ctx, key, parent, labels, snapshots::Kind::kView);
}

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::PrepareDetached(
    const Context& ctx, const std::string& key, const snapshots::Labels& labels) {
  if (!SupportsDetached()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", options_.kind, " snapshotter has no detached snapshots (a snapshot needs its "
        "parent's contents)"));
  }
  return Create(ctx, key, "", labels, snapshots::Kind::kActive);
}

absl::StatusOr<std::vector<int64_t>> LocalSnapshotter::CheckNewLocked(const std::string& ns,
                                                                      const std::string& key,
                                                                      const std::string& parent) {
  BERTH_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> existing, meta_->Get(ns, key));
  if (existing.has_value()) {
    return absl::AlreadyExistsError(absl::StrCat("snapshot ", key, ": already exists"));
  }
  if (parent.empty()) {
    return std::vector<int64_t>();
  }
  BERTH_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> p, meta_->Get(ns, parent));
  if (!p.has_value()) {
    return absl::NotFoundError(absl::StrCat("parent snapshot ", parent, ": not found"));
  }
  if (p->info.kind != snapshots::Kind::kCommitted) {
    return absl::FailedPreconditionError(absl::StrCat(
        "parent snapshot ", parent, " is ", KindName(p->info.kind), ", not committed"));
  }
  return meta_->Chain(p->id);
}

absl::Status LocalSnapshotter::CheckTargetLocked(const Context& ctx, const std::string& parent,
                                                const snapshots::Labels& labels) {
  const std::string& ns = ctx.ns;
  auto wanted = labels.find(kSnapshotRefLabel);
  if (wanted == labels.end()) {
    return absl::OkStatus();
  }
  const std::string& target = wanted->second;
  BERTH_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> existing, meta_->Get(ns, target));
  if (!existing.has_value() || existing->info.kind != snapshots::Kind::kCommitted ||
      existing->info.parent != parent) {
    return absl::OkStatus();  // nothing to share: the caller makes the snapshot itself
  }
  // containerd finds the target by a Walk on this label: a snapshot committed without it (by an
  // older berth) gets it now.
  if (auto has = existing->info.labels.find(kSnapshotRefLabel);
      has == existing->info.labels.end() || has->second != target) {
    snapshots::Labels updated = existing->info.labels;
    updated[kSnapshotRefLabel] = target;
    BERTH_RETURN_IF_ERROR(meta_->SetLabels(existing->id, updated, absl::Now()));
  }
  if (ctx.proxy_consumer) {
    // containerd adopts it: its metadata names it from now on.
    BERTH_RETURN_IF_ERROR(meta_->MarkProxyOwned(existing->id));
  }
  return absl::AlreadyExistsError(absl::StrCat("target snapshot ", target, ": already exists"));
}

absl::Status LocalSnapshotter::FillEntry(const std::string& entry, snapshots::Kind kind,
                                         const std::vector<int64_t>& parents) {
  std::string path = absl::StrCat(SnapshotsDir(), "/", entry);
  if (::mkdir(path.c_str(), 0700) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkdir ", path));
  }
  return Populate(path, kind, parents);
}

void LocalSnapshotter::DropEntry(const std::string& entry) {
  if (absl::Status st = RemoveTree(absl::StrCat(SnapshotsDir(), "/", entry)); !st.ok()) {
    BERTH_LOG(Warn) << "snapshotd: " << st << " (Cleanup retries)";
  }
  absl::MutexLock lock(&mu_);
  busy_.erase(entry);
}

absl::Status LocalSnapshotter::RenameIntoPlaceLocked(const std::string& temp, int64_t id,
                                                     std::string* stale) {
  const std::string temp_path = absl::StrCat(SnapshotsDir(), "/", temp);
  const std::string final_path = SnapshotDir(id);
  if (::rename(temp_path.c_str(), final_path.c_str()) == 0) {
    return absl::OkStatus();
  }
  if (errno != EEXIST && errno != ENOTEMPTY) {
    return ErrnoStatus(errno, absl::StrCat("rename ", temp_path, " to ", final_path));
  }
  // A directory left by a crash before its record committed holds this id.
  BERTH_ASSIGN_OR_RETURN(*stale, MoveAside(absl::StrCat(id)));
  busy_.insert(*stale);
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("rename ", temp_path, " to ", final_path));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LocalSnapshotter::RecordNew(const Context& ctx, const std::string& key,
                                                    const std::string& parent,
                                                    const snapshots::Labels& labels,
                                                    snapshots::Kind kind,
                                                    const std::vector<int64_t>& parents,
                                                    const std::string& temp) {
  BERTH_ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                         RecordNewAll(ctx, {key}, parent, labels, kind, parents, {temp}));
  return ids.front();
}

absl::StatusOr<std::vector<int64_t>> LocalSnapshotter::RecordNewAll(
    const Context& ctx, const std::vector<std::string>& keys, const std::string& parent,
    const snapshots::Labels& labels, snapshots::Kind kind, const std::vector<int64_t>& parents,
    const std::vector<std::string>& temps) {
  std::vector<int64_t> ids;
  std::vector<std::string> stale;      // a crash's leftovers that held our ids, moved aside
  std::vector<std::string> leftovers;  // what to remove if the records are not made
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& temp : temps) {
      busy_.erase(temp);  // back in below if it outlives a failure
    }
    size_t renamed = 0;
    status = meta_->Transaction([&]() -> absl::Status {
      ids.clear();
      for (size_t i = 0; i < keys.size(); ++i) {
        // The parent may have gone while the directory was filled.
        BERTH_ASSIGN_OR_RETURN(std::vector<int64_t> chain,
                               CheckNewLocked(ctx.ns, keys[i], parent));
        if (chain != parents) {
          return absl::AbortedError(absl::StrCat("parent snapshot ", parent, " changed"));
        }
        BERTH_ASSIGN_OR_RETURN(int64_t id,
                               meta_->Insert(ctx.ns, keys[i], kind,
                                             parents.empty() ? 0 : parents.front(), labels,
                                             absl::Now()));
        ids.push_back(id);
        if (!ctx.lease.empty()) {
          BERTH_RETURN_IF_ERROR(meta_->AddLeaseResource(ctx.ns, ctx.lease, keys[i]));
        }
        if (ctx.proxy_consumer) {
          BERTH_RETURN_IF_ERROR(meta_->MarkProxyOwned(id));
        }
        std::string moved;
        BERTH_RETURN_IF_ERROR(RenameIntoPlaceLocked(temps[i], id, &moved));
        ++renamed;
        if (!moved.empty()) {
          stale.push_back(moved);
        }
      }
      // One fsync of snapshots/ makes every rename durable before the records are.
      return FsyncDir(SnapshotsDir());
    });
    for (size_t i = 0; i < temps.size() && !status.ok(); ++i) {
      std::string leftover = temps[i];
      if (i < renamed) {
        // No record owns the directory and its id may be handed out again: move it aside
        // while still holding the lock, so it cannot be confused with the next snapshot of
        // that id.
        absl::StatusOr<std::string> aside = MoveAside(absl::StrCat(ids[i]));
        leftover = aside.ok() ? *aside : "";
      }
      if (!leftover.empty()) {
        busy_.insert(leftover);
        leftovers.push_back(leftover);
      }
    }
  }
  for (const std::string& entry : stale) {
    DropEntry(entry);
  }
  for (const std::string& entry : leftovers) {
    DropEntry(entry);
  }
  if (!status.ok()) {
    return status;
  }
  return ids;
}

absl::StatusOr<std::vector<std::vector<mount::Mount>>> LocalSnapshotter::PrepareDetachedAll(
    const Context& ctx, const std::vector<std::string>& keys, const snapshots::Labels& labels) {
  if (!SupportsDetached()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", options_.kind, " snapshotter has no detached snapshots (a snapshot needs its "
        "parent's contents)"));
  }
  BERTH_RETURN_IF_ERROR(ValidateNs(ctx));
  for (const std::string& key : keys) {
    BERTH_RETURN_IF_ERROR(ValidateKey("key", key));
  }
  BERTH_RETURN_IF_ERROR(ValidateLabels(labels));
  std::vector<std::string> temps;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : keys) {
      BERTH_RETURN_IF_ERROR(CheckNewLocked(ctx.ns, key, "").status());
      temps.push_back(TempName());
      busy_.insert(temps.back());
    }
  }
  for (size_t i = 0; i < temps.size(); ++i) {
    if (absl::Status filled = FillEntry(temps[i], snapshots::Kind::kActive, {}); !filled.ok()) {
      for (size_t j = 0; j <= i; ++j) {
        DropEntry(temps[j]);
      }
      for (size_t j = i + 1; j < temps.size(); ++j) {
        absl::MutexLock lock(&mu_);
        busy_.erase(temps[j]);
      }
      return filled;
    }
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                         RecordNewAll(ctx, keys, "", labels, snapshots::Kind::kActive, {}, temps));
  std::vector<containerd::events::SnapshotPrepare> events(keys.size());
  std::vector<std::vector<mount::Mount>> mounts;
  for (size_t i = 0; i < keys.size(); ++i) {
    events[i].set_key(keys[i]);
    mounts.push_back(MountsOf(ids[i], snapshots::Kind::kActive, {}));
  }
  PublishAll(ctx.ns, "/snapshot/prepare", events);
  return mounts;
}

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::Create(const Context& ctx,
                                                                   const std::string& key,
                                                                   const std::string& parent,
                                                                   const snapshots::Labels& labels,
                                                                   snapshots::Kind kind) {
  BERTH_RETURN_IF_ERROR(ValidateNs(ctx));
  BERTH_RETURN_IF_ERROR(ValidateKey("key", key));
  BERTH_RETURN_IF_ERROR(ValidateLabels(labels));
  std::vector<int64_t> parents;
  std::string temp;
  {
    absl::MutexLock lock(&mu_);
    BERTH_RETURN_IF_ERROR(CheckTargetLocked(ctx, parent, labels));
    BERTH_ASSIGN_OR_RETURN(parents, CheckNewLocked(ctx.ns, key, parent));
    temp = TempName();
    busy_.insert(temp);
  }
  if (absl::Status filled = FillEntry(temp, kind, parents); !filled.ok()) {
    DropEntry(temp);
    return filled;
  }
  BERTH_ASSIGN_OR_RETURN(int64_t id, RecordNew(ctx, key, parent, labels, kind, parents, temp));
  containerd::events::SnapshotPrepare event;
  event.set_key(key);
  event.set_parent(parent);
  Publish(ctx.ns, "/snapshot/prepare", event);
  return MountsOf(id, kind, parents);
}

}  // namespace berth::snapshotd
