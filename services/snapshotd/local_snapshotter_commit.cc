// LocalSnapshotter: Commit (and CommitWithParent), Remove and Cleanup: the calls that
// change or end an existing snapshot.

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

absl::Status LocalSnapshotter::Commit(const Context& ctx, const std::string& name,
                                      const std::string& key, const snapshots::Labels& labels) {
  return CommitImpl(ctx, name, key, nullptr, labels);
}

absl::Status LocalSnapshotter::CommitWithParent(const Context& ctx, const std::string& name,
                                                const std::string& key, const std::string& parent,
                                                const snapshots::Labels& labels) {
  if (!SupportsDetached()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", options_.kind, " snapshotter has no detached snapshots (a snapshot needs its "
        "parent's contents)"));
  }
  return CommitImpl(ctx, name, key, &parent, labels);
}

absl::Status LocalSnapshotter::CommitImpl(const Context& ctx, const std::string& name,
                                          const std::string& key, const std::string* parent,
                                          const snapshots::Labels& labels) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("name", name); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", key); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateLabels(labels); !st.ok()) {
    return st;
  }
  auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, key);
    if (!r.ok()) {
      return r.status();
    }
    if (r->info.kind != snapshots::Kind::kActive) {
      return absl::FailedPreconditionError(absl::StrCat(
          "snapshot ", key, " is ", KindName(r->info.kind), ": only an active one can commit"));
    }
    absl::StatusOr<std::optional<SnapshotRecord>> taken = meta_->Get(ctx.ns, name);
    if (!taken.ok()) {
      return taken.status();
    }
    if (taken->has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("snapshot ", name, ": already exists"));
    }
    if (parent != nullptr && r->parent_id != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", key, " has parent ", r->info.parent, ": not detached"));
    }
    return r->id;
  };
  // CommitWithParent: the new parent's id (0: none), checked committed.
  auto check_parent = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    if (parent == nullptr || parent->empty()) {
      return 0;
    }
    absl::StatusOr<std::optional<SnapshotRecord>> p = meta_->Get(ctx.ns, *parent);
    if (!p.ok()) {
      return p.status();
    }
    if (!p->has_value()) {
      return absl::NotFoundError(absl::StrCat("parent snapshot ", *parent, ": not found"));
    }
    if ((*p)->info.kind != snapshots::Kind::kCommitted) {
      return absl::FailedPreconditionError(absl::StrCat(
          "parent snapshot ", *parent, " is ", KindName((*p)->info.kind), ", not committed"));
    }
    return (*p)->id;
  };
  int64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<int64_t> checked = check();
    if (!checked.ok()) {
      return checked.status();
    }
    id = *checked;
    if (absl::StatusOr<int64_t> p = check_parent(); !p.ok()) {
      return p.status();
    }
  }
  // Measured without the lock: a big tree takes a while.
  absl::StatusOr<DiskUsage> du = ComputeDiskUsage(FsDir(id));
  if (!du.ok()) {
    return du.status();
  }
  {
    absl::MutexLock lock(&mu_);
    absl::Status status = meta_->Transaction([&]() -> absl::Status {
      absl::StatusOr<int64_t> checked = check();
      if (!checked.ok()) {
        return checked.status();
      }
      if (*checked != id) {
        return absl::AbortedError(absl::StrCat("snapshot ", key, " changed during commit"));
      }
      if (parent != nullptr) {
        absl::StatusOr<int64_t> parent_id = check_parent();
        if (!parent_id.ok()) {
          return parent_id.status();
        }
        if (absl::Status st = meta_->SetParent(id, *parent_id); !st.ok()) {
          return st;
        }
      }
      if (absl::Status st =
              meta_->MarkCommitted(id, name, labels, {du->size, du->inodes}, absl::Now());
          !st.ok()) {
        return st;
      }
      if (absl::Status st = meta_->RenameLeaseResources(ctx.ns, key, name); !st.ok()) {
        return st;
      }
      if (ctx.proxy_consumer) {
        if (absl::Status st = meta_->MarkProxyOwned(id); !st.ok()) {
          return st;
        }
      }
      if (!ctx.lease.empty()) {
        return meta_->AddLeaseResource(ctx.ns, ctx.lease, name);
      }
      return absl::OkStatus();
    });
    if (!status.ok()) {
      return status;
    }
  }
  containerd::events::SnapshotCommit event;
  event.set_key(key);
  event.set_name(name);
  Publish(ctx.ns, "/snapshot/commit", event);
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
