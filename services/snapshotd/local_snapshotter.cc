#include "services/snapshotd/local_snapshotter.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "containerd/events/snapshot.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/filters/filter.h"
#include "services/snapshotd/fs_util.h"

namespace berth::snapshotd {

namespace {

constexpr absl::string_view kTempPrefix = "tmp-";
constexpr absl::string_view kRemovedPrefix = "removed-";

absl::Status ErrnoError(int err, absl::string_view what) { return absl::ErrnoToStatus(err, what); }

absl::Status NotFound(const std::string& key) {
  return absl::NotFoundError(absl::StrCat("snapshot ", key, ": not found"));
}

const char* KindName(snapshots::Kind kind) {
  switch (kind) {
    case snapshots::Kind::kActive:
      return "active";
    case snapshots::Kind::kView:
      return "view";
    case snapshots::Kind::kCommitted:
      return "committed";
    default:
      return "unknown";
  }
}

absl::Status FsyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError(errno, absl::StrCat("open ", path));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoError(err, absl::StrCat("fsync ", path));
}

absl::Status ValidateNs(const Context& ctx) { return ValidateNamespace(ctx.ns); }

}  // namespace

absl::Status ValidateKey(absl::string_view what, const std::string& key) {
  if (key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot ", what, " must not be empty"));
  }
  return absl::OkStatus();
}

LocalSnapshotter::LocalSnapshotter(SnapshotterOptions options) : options_(std::move(options)) {}

LocalSnapshotter::~LocalSnapshotter() {
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
  }
}

std::string LocalSnapshotter::SnapshotDir(int64_t id) const {
  return absl::StrCat(SnapshotsDir(), "/", id);
}

std::string LocalSnapshotter::TempName() {
  return absl::StrCat(kTempPrefix, absl::ToUnixNanos(absl::Now()), "-", ++counter_);
}

absl::Status LocalSnapshotter::Init() {
  if (options_.root.empty() || options_.root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshotter root must be an absolute path: \"", options_.root, "\""));
  }
  std::error_code ec;
  std::filesystem::create_directories(SnapshotsDir(), ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("create ", SnapshotsDir(), ": ", ec.message()));
  }
  std::string lock_path = options_.root + "/lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    return ErrnoError(errno, absl::StrCat("open ", lock_path));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshotter root ", options_.root, " is in use by another snapshotter"));
    }
    return ErrnoError(errno, absl::StrCat("lock ", lock_path));
  }
  absl::StatusOr<std::unique_ptr<MetaStore>> meta = MetaStore::Open(options_.root + "/metadata.db");
  if (!meta.ok()) {
    return meta.status();
  }
  {
    absl::MutexLock lock(&mu_);
    meta_ = std::move(*meta);
  }
  // A leftover that cannot go now (say, something is mounted inside it) must not keep the
  // snapshotter from starting: the next Cleanup tries again.
  if (absl::Status st = Cleanup(Context{}); !st.ok()) {
    BERTH_LOG(Warn) << "snapshotd: cleaning up " << options_.root << ": " << st;
  }
  return absl::OkStatus();
}

void LocalSnapshotter::Publish(const std::string& ns, absl::string_view topic,
                               const google::protobuf::Message& event) {
  if (options_.publisher == nullptr) {
    return;
  }
  if (absl::Status st = options_.publisher->Publish(ns, topic, event); !st.ok()) {
    BERTH_LOG(Error) << "snapshotd: publishing " << topic << " in " << ns << ": " << st;
  }
}

absl::StatusOr<SnapshotRecord> LocalSnapshotter::GetLocked(const std::string& ns,
                                                           const std::string& key) {
  absl::StatusOr<std::optional<SnapshotRecord>> r = meta_->Get(ns, key);
  if (!r.ok()) {
    return r.status();
  }
  if (!r->has_value()) {
    return NotFound(key);
  }
  return std::move(**r);
}

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::MountsLocked(
    const SnapshotRecord& record) {
  if (record.info.kind == snapshots::Kind::kCommitted) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", record.info.name, " is committed: it has no mounts"));
  }
  std::vector<int64_t> parents;
  if (record.parent_id != 0) {
    absl::StatusOr<std::vector<int64_t>> chain = meta_->Chain(record.parent_id);
    if (!chain.ok()) {
      return chain.status();
    }
    parents = std::move(*chain);
  }
  return MountsOf(record.id, record.info.kind, parents);
}

absl::StatusOr<std::string> LocalSnapshotter::MoveAside(const std::string& name) {
  std::string aside = absl::StrCat(kRemovedPrefix, name);
  if (absl::StartsWith(name, kRemovedPrefix)) {
    return name;
  }
  std::string from = absl::StrCat(SnapshotsDir(), "/", name);
  std::string to = absl::StrCat(SnapshotsDir(), "/", aside);
  if (::rename(from.c_str(), to.c_str()) != 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) {
      return ErrnoError(errno, absl::StrCat("rename ", from));
    }
    // A leftover of an earlier crash holds the name: pick a unique one.
    aside = absl::StrCat(kRemovedPrefix, name, "-", TempName());
    to = absl::StrCat(SnapshotsDir(), "/", aside);
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("rename ", from));
    }
  }
  return aside;
}

// --- Snapshotter -------------------------------------------------------------------------------

absl::StatusOr<snapshots::Info> LocalSnapshotter::Stat(const Context& ctx, const std::string& key) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", key); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, key);
  if (!r.ok()) {
    return r.status();
  }
  return std::move(r->info);
}

absl::StatusOr<snapshots::Info> LocalSnapshotter::Update(
    const Context& ctx, const snapshots::Info& info, const std::vector<std::string>& fieldpaths) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", info.name); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  snapshots::Info updated;
  absl::Status status = meta_->Transaction([&]() -> absl::Status {
    absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, info.name);
    if (!r.ok()) {
      return r.status();
    }
    if (absl::Status st = ApplyLabelUpdate(&r->info.labels, info.labels, fieldpaths, info.name);
        !st.ok()) {
      return st;
    }
    absl::Time now = absl::Now();
    if (absl::Status st = meta_->SetLabels(r->id, r->info.labels, now); !st.ok()) {
      return st;
    }
    r->info.updated_at = now;
    updated = std::move(r->info);
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return updated;
}

absl::StatusOr<snapshots::Usage> LocalSnapshotter::GetUsage(const Context& ctx,
                                                            const std::string& key) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", key); !st.ok()) {
    return st;
  }
  int64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, key);
    if (!r.ok()) {
      return r.status();
    }
    if (r->info.kind == snapshots::Kind::kCommitted) {
      return r->usage;
    }
    id = r->id;
  }
  absl::StatusOr<DiskUsage> du = ComputeDiskUsage(FsDir(id));
  if (!du.ok()) {
    return du.status();
  }
  return snapshots::Usage{du->size, du->inodes};
}

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::Mounts(const Context& ctx,
                                                                   const std::string& key) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", key); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, key);
  if (!r.ok()) {
    return r.status();
  }
  return MountsLocked(*r);
}

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

absl::StatusOr<std::vector<mount::Mount>> LocalSnapshotter::Create(const Context& ctx,
                                                                   const std::string& key,
                                                                   const std::string& parent,
                                                                   const snapshots::Labels& labels,
                                                                   snapshots::Kind kind) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateKey("key", key); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateLabels(labels); !st.ok()) {
    return st;
  }
  // Checks the key and the parent; returns the parent's chain (nearest first).
  auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<std::vector<int64_t>> {
    absl::StatusOr<std::optional<SnapshotRecord>> existing = meta_->Get(ctx.ns, key);
    if (!existing.ok()) {
      return existing.status();
    }
    if (existing->has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("snapshot ", key, ": already exists"));
    }
    if (parent.empty()) {
      return std::vector<int64_t>();
    }
    absl::StatusOr<std::optional<SnapshotRecord>> p = meta_->Get(ctx.ns, parent);
    if (!p.ok()) {
      return p.status();
    }
    if (!p->has_value()) {
      return absl::NotFoundError(absl::StrCat("parent snapshot ", parent, ": not found"));
    }
    if ((*p)->info.kind != snapshots::Kind::kCommitted) {
      return absl::FailedPreconditionError(absl::StrCat(
          "parent snapshot ", parent, " is ", KindName((*p)->info.kind), ", not committed"));
    }
    return meta_->Chain((*p)->id);
  };

  std::string temp;
  std::vector<int64_t> parents;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::vector<int64_t>> chain = check();
    if (!chain.ok()) {
      return chain.status();
    }
    parents = std::move(*chain);
    temp = TempName();
    busy_.insert(temp);
  }
  std::string temp_path = absl::StrCat(SnapshotsDir(), "/", temp);
  auto discard = [&] {
    if (absl::Status st = RemoveTree(temp_path); !st.ok()) {
      BERTH_LOG(Warn) << "snapshotd: " << st << " (Cleanup retries)";
    }
    absl::MutexLock lock(&mu_);
    busy_.erase(temp);
  };
  absl::Status filled = ::mkdir(temp_path.c_str(), 0700) == 0
                            ? Populate(temp_path, kind, parents)
                            : ErrnoError(errno, absl::StrCat("mkdir ", temp_path));
  if (!filled.ok()) {
    discard();
    return filled;
  }

  int64_t id = 0;
  bool renamed = false;
  std::string stale;  // a crash's leftover that held our id, moved aside
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    busy_.erase(temp);  // back in below if it outlives a failure
    status = meta_->Transaction([&]() -> absl::Status {
      // The parent may have gone while the directory was filled.
      absl::StatusOr<std::vector<int64_t>> chain = check();
      if (!chain.ok()) {
        return chain.status();
      }
      if (*chain != parents) {
        return absl::AbortedError(absl::StrCat("parent snapshot ", parent, " changed"));
      }
      absl::StatusOr<int64_t> inserted = meta_->Insert(
          ctx.ns, key, kind, parents.empty() ? 0 : parents.front(), labels, absl::Now());
      if (!inserted.ok()) {
        return inserted.status();
      }
      id = *inserted;
      if (!ctx.lease.empty()) {
        if (absl::Status st = meta_->AddLeaseResource(ctx.ns, ctx.lease, key); !st.ok()) {
          return st;
        }
      }
      std::string final_path = SnapshotDir(id);
      if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY) {
          return ErrnoError(errno, absl::StrCat("rename ", temp_path, " to ", final_path));
        }
        // A directory left by a crash before its record committed holds this id.
        absl::StatusOr<std::string> aside = MoveAside(absl::StrCat(id));
        if (!aside.ok()) {
          return aside.status();
        }
        stale = *aside;
        busy_.insert(stale);
        if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
          return ErrnoError(errno, absl::StrCat("rename ", temp_path, " to ", final_path));
        }
      }
      renamed = true;
      return FsyncDir(SnapshotsDir());
    });
    if (!status.ok() && renamed) {
      // No record owns the directory and its id may be handed out again: move it aside while
      // still holding the lock, so it cannot be confused with the next snapshot of that id.
      absl::StatusOr<std::string> aside = MoveAside(absl::StrCat(id));
      temp = aside.ok() ? *aside : "";
    }
    if (!status.ok() && !temp.empty()) {
      busy_.insert(temp);
    }
  }
  if (!stale.empty()) {
    if (absl::Status st = RemoveTree(absl::StrCat(SnapshotsDir(), "/", stale)); !st.ok()) {
      BERTH_LOG(Warn) << "snapshotd: " << st << " (Cleanup retries)";
    }
    absl::MutexLock lock(&mu_);
    busy_.erase(stale);
  }
  if (!status.ok()) {
    if (!temp.empty()) {
      if (absl::Status st = RemoveTree(absl::StrCat(SnapshotsDir(), "/", temp)); !st.ok()) {
        BERTH_LOG(Warn) << "snapshotd: " << st << " (Cleanup retries)";
      }
      absl::MutexLock lock(&mu_);
      busy_.erase(temp);
    }
    return status;
  }
  containerd::events::SnapshotPrepare event;
  event.set_key(key);
  event.set_parent(parent);
  Publish(ctx.ns, "/snapshot/prepare", event);
  return MountsOf(id, kind, parents);
}

absl::Status LocalSnapshotter::Commit(const Context& ctx, const std::string& name,
                                      const std::string& key, const snapshots::Labels& labels) {
  return CommitImpl(ctx, name, key, nullptr, labels);
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

absl::Status LocalSnapshotter::Walk(const Context& ctx, const std::vector<std::string>& filters,
                                    const std::function<absl::Status(const snapshots::Info&)>& fn) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
  if (!filter.ok()) {
    return filter.status();
  }
  // Collect first: fn may call back into the snapshotter.
  std::vector<snapshots::Info> matched;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::vector<SnapshotRecord>> all = meta_->List(ctx.ns);
    if (!all.ok()) {
      return all.status();
    }
    for (SnapshotRecord& r : *all) {
      const snapshots::Info& info = r.info;
      filters::Adaptor adaptor = filters::MakeAdaptor(
          [&](absl::string_view field) -> std::optional<std::string> {
            if (field == "name" && !info.name.empty()) {
              return info.name;
            }
            if (field == "parent" && !info.parent.empty()) {
              return info.parent;
            }
            if (field == "kind") {
              return std::string(KindName(info.kind));
            }
            return std::nullopt;
          },
          &info.labels);
      if (filter->Match(adaptor)) {
        matched.push_back(std::move(r.info));
      }
    }
  }
  for (const snapshots::Info& info : matched) {
    if (absl::Status st = fn(info); !st.ok()) {
      return st;
    }
  }
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

absl::StatusOr<std::string> LocalSnapshotter::UpperDir(const Context& ctx, const std::string& key) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<SnapshotRecord> r = GetLocked(ctx.ns, key);
  if (!r.ok()) {
    return r.status();
  }
  if (r->info.kind != snapshots::Kind::kActive) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", key, " is ", KindName(r->info.kind), ", not active"));
  }
  return FsDir(r->id);
}

absl::StatusOr<std::vector<std::string>> LocalSnapshotter::LeaseResources(const Context& ctx) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  return meta_->LeaseResources(ctx.ns, ctx.lease);
}

}  // namespace berth::snapshotd
