// LocalSnapshotter: Commit (and CommitWithParent), Remove and Cleanup: the calls that
// change or end an existing snapshot.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
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

absl::Status LocalSnapshotter::Commit(const Context& ctx, const std::string& name,
                                      const std::string& key, const snapshots::Labels& labels) {
  return CommitImpl(ctx, {CommitStep{name, key, "", labels}}, /*detached=*/false);
}

absl::Status LocalSnapshotter::CommitWithParent(const Context& ctx, const std::string& name,
                                                const std::string& key, const std::string& parent,
                                                const snapshots::Labels& labels) {
  return CommitChain(ctx, {CommitStep{name, key, parent, labels}});
}

absl::Status LocalSnapshotter::CommitChain(const Context& ctx,
                                           const std::vector<CommitStep>& steps) {
  if (!SupportsDetached()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", options_.kind, " snapshotter has no detached snapshots (a snapshot needs its "
        "parent's contents)"));
  }
  return CommitImpl(ctx, steps, /*detached=*/true);
}

absl::Status LocalSnapshotter::CommitImpl(const Context& ctx,
                                          const std::vector<CommitStep>& steps, bool detached) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (steps.empty()) {
    return absl::OkStatus();
  }
  std::set<std::string> names;  // committed by this call, so parents of the steps above
  for (const CommitStep& step : steps) {
    BERTH_RETURN_IF_ERROR(ValidateKey("name", step.name));
    BERTH_RETURN_IF_ERROR(ValidateKey("key", step.key));
    BERTH_RETURN_IF_ERROR(ValidateLabels(step.labels));
    names.insert(step.name);
  }
  // The key's id, checked active (and, detached, without a parent) and its name free.
  auto check = [&](const CommitStep& step)
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    BERTH_ASSIGN_OR_RETURN(SnapshotRecord r, GetLocked(ctx.ns, step.key));
    if (r.info.kind != snapshots::Kind::kActive) {
      return absl::FailedPreconditionError(absl::StrCat(
          "snapshot ", step.key, " is ", KindName(r.info.kind), ": only an active one can commit"));
    }
    BERTH_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> taken, meta_->Get(ctx.ns, step.name));
    if (taken.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("snapshot ", step.name, ": already exists"));
    }
    if (detached && r.parent_id != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", step.key, " has parent ", r.info.parent, ": not detached"));
    }
    return r.id;
  };
  // Detached: the new parent's id (0: none), checked committed.
  auto check_parent = [&](const CommitStep& step)
                          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    if (!detached || step.parent.empty()) {
      return 0;
    }
    BERTH_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> p, meta_->Get(ctx.ns, step.parent));
    if (!p.has_value()) {
      return absl::NotFoundError(absl::StrCat("parent snapshot ", step.parent, ": not found"));
    }
    if (p->info.kind != snapshots::Kind::kCommitted) {
      return absl::FailedPreconditionError(absl::StrCat(
          "parent snapshot ", step.parent, " is ", KindName(p->info.kind), ", not committed"));
    }
    return p->id;
  };
  std::vector<int64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const CommitStep& step : steps) {
      BERTH_ASSIGN_OR_RETURN(int64_t id, check(step));
      ids.push_back(id);
      if (names.count(step.parent) == 0) {  // a parent from this call commits below
        BERTH_RETURN_IF_ERROR(check_parent(step).status());
      }
    }
  }
  // Measured without the lock: a big tree takes a while.
  std::vector<DiskUsage> usage;
  for (int64_t id : ids) {
    BERTH_ASSIGN_OR_RETURN(DiskUsage du, ComputeDiskUsage(FsDir(id)));
    usage.push_back(du);
  }
  {
    absl::MutexLock lock(&mu_);
    // Bottom-up in one transaction: each step sees the ones below it committed.
    BERTH_RETURN_IF_ERROR(meta_->Transaction([&]() -> absl::Status {
      for (size_t i = 0; i < steps.size(); ++i) {
        const CommitStep& step = steps[i];
        BERTH_ASSIGN_OR_RETURN(int64_t checked, check(step));
        if (checked != ids[i]) {
          return absl::AbortedError(absl::StrCat("snapshot ", step.key, " changed during commit"));
        }
        if (detached) {
          BERTH_ASSIGN_OR_RETURN(int64_t parent_id, check_parent(step));
          BERTH_RETURN_IF_ERROR(meta_->SetParent(ids[i], parent_id));
        }
        BERTH_RETURN_IF_ERROR(meta_->MarkCommitted(ids[i], step.name, step.labels,
                                                   {usage[i].size, usage[i].inodes},
                                                   absl::Now()));
        BERTH_RETURN_IF_ERROR(meta_->RenameLeaseResources(ctx.ns, step.key, step.name));
        if (ctx.proxy_consumer) {
          BERTH_RETURN_IF_ERROR(meta_->MarkProxyOwned(ids[i]));
        }
        if (!ctx.lease.empty()) {
          BERTH_RETURN_IF_ERROR(meta_->AddLeaseResource(ctx.ns, ctx.lease, step.name));
        }
      }
      return absl::OkStatus();
    }));
  }
  std::vector<containerd::events::SnapshotCommit> events(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    events[i].set_key(steps[i].key);
    events[i].set_name(steps[i].name);
  }
  PublishAll(ctx.ns, "/snapshot/commit", events);
  return absl::OkStatus();
}

absl::Status LocalSnapshotter::Remove(const Context& ctx, const std::string& key) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", key); !st.ok()) {
    return st;
  }
  if (ctx.proxy_consumer && remove_guard_) {
    if (absl::Status st = remove_guard_(ctx, key); !st.ok()) {
      return st;
    }
  }
  std::string aside;
  {
    absl::MutexLock lock(&mu_);
    int64_t id = 0;
    absl::Status status = meta_->Transaction([&]() -> absl::Status {
      absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, key);
      if (!r.ok()) {
        return r.status();
      }
      absl::StatusOr<int64_t> children = meta_->CountChildren(r->id);
      if (!children.ok()) {
        return children.status();
      }
      if (*children > 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("snapshot ", key, " has ", *children, " children: cannot remove"));
      }
      id = r->id;
      if (absl::Status st = meta_->Delete(id); !st.ok()) {
        return st;
      }
      return meta_->DeleteLeaseResources(ctx.ns, key);
    });
    if (!status.ok()) {
      return status;
    }
    // The record is gone: from here on the directory is garbage, whatever happens.
    absl::StatusOr<std::string> moved = MoveAside(absl::StrCat(id));
    if (moved.ok()) {
      aside = *moved;
      busy_.insert(aside);
    } else {
      BERTH_LOG(Warn) << "snapshotd: removing snapshot " << key << ": " << moved.status()
                      << " (Cleanup retries)";
    }
  }
  if (!aside.empty()) {
    if (absl::Status st = RemoveTree(absl::StrCat(SnapshotsDir(), "/", aside)); !st.ok()) {
      BERTH_LOG(Warn) << "snapshotd: removing snapshot " << key << ": " << st
                      << " (Cleanup retries)";
    }
    absl::MutexLock lock(&mu_);
    busy_.erase(aside);
  }
  containerd::events::SnapshotRemove event;
  event.set_key(key);
  Publish(ctx.ns, "/snapshot/remove", event);
  return absl::OkStatus();
}

absl::Status LocalSnapshotter::Cleanup(const Context& ctx) {
  std::vector<std::string> garbage;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::set<int64_t>> ids = meta_->AllIds();
    if (!ids.ok()) {
      return ids.status();
    }
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(SnapshotsDir(), ec)) {
      names.push_back(entry.path().filename().string());
    }
    if (ec) {
      return absl::InternalError(absl::StrCat("list ", SnapshotsDir(), ": ", ec.message()));
    }
    for (const std::string& name : names) {
      int64_t id = 0;
      if (absl::SimpleAtoi(name, &id) && absl::StrCat(id) == name && ids->count(id) > 0) {
        continue;
      }
      if (busy_.count(name) > 0) {
        continue;
      }
      // Renamed under the lock, so a Prepare that reuses a crashed id cannot lose its new
      // directory to this removal.
      absl::StatusOr<std::string> aside = MoveAside(name);
      if (!aside.ok()) {
        return aside.status();
      }
      busy_.insert(*aside);
      garbage.push_back(*aside);
    }
  }
  absl::Status result;
  for (const std::string& name : garbage) {
    BERTH_LOG(Info) << "snapshotd: cleanup removes " << SnapshotsDir() << "/" << name;
    if (absl::Status st = RemoveTree(absl::StrCat(SnapshotsDir(), "/", name));
        !st.ok() && result.ok()) {
      result = st;
    }
  }
  absl::MutexLock lock(&mu_);
  for (const std::string& name : garbage) {
    busy_.erase(name);
  }
  return result;
}

}  // namespace berth::snapshotd
