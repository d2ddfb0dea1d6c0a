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
#include "lib/base/posix.h"
#include "services/snapshotd/fs_util.h"

namespace berth::snapshotd {
namespace {

absl::Status ValidateNs(const Context& ctx) { return ValidateNamespace(ctx.ns); }

}  // namespace

absl::string_view KindName(snapshots::Kind kind) {
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

absl::Status SnapshotNotFound(const std::string& key) {
  return absl::NotFoundError(absl::StrCat("snapshot ", key, ": not found"));
}

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
  return absl::StrCat(kTempEntryPrefix, absl::ToUnixNanos(absl::Now()), "-", ++counter_);
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
    return ErrnoStatus(errno, absl::StrCat("open ", lock_path));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshotter root ", options_.root, " is in use by another snapshotter"));
    }
    return ErrnoStatus(errno, absl::StrCat("lock ", lock_path));
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

void LocalSnapshotter::PublishEvents(
    const std::string& ns,
    const std::vector<std::pair<std::string, const google::protobuf::Message*>>& events) {
  if (options_.publisher == nullptr || events.empty()) {
    return;
  }
  if (absl::Status st = options_.publisher->PublishAll(ns, events); !st.ok()) {
    BERTH_LOG(Error) << "snapshotd: publishing " << events.size() << " events ("
                     << events.front().first << ") in " << ns << ": " << st;
  }
}

absl::StatusOr<SnapshotRecord> LocalSnapshotter::GetLocked(const std::string& ns,
                                                           const std::string& key) {
  absl::StatusOr<std::optional<SnapshotRecord>> r = meta_->Get(ns, key);
  if (!r.ok()) {
    return r.status();
  }
  if (!r->has_value()) {
    return SnapshotNotFound(key);
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
  std::string aside = absl::StrCat(kRemovedEntryPrefix, name);
  if (absl::StartsWith(name, kRemovedEntryPrefix)) {
    return name;
  }
  std::string from = absl::StrCat(SnapshotsDir(), "/", name);
  std::string to = absl::StrCat(SnapshotsDir(), "/", aside);
  if (::rename(from.c_str(), to.c_str()) != 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) {
      return ErrnoStatus(errno, absl::StrCat("rename ", from));
    }
    // A leftover of an earlier crash holds the name: pick a unique one.
    aside = absl::StrCat(kRemovedEntryPrefix, name, "-", TempName());
    to = absl::StrCat(SnapshotsDir(), "/", aside);
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("rename ", from));
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
      // As containerd's adaptSnapshot: name and parent are always present, "" when none
      // (its remote-snapshotter lookup walks with parent=="" for a chain's first layer).
      filters::Adaptor adaptor = filters::MakeAdaptor(
          [&](absl::string_view field) -> std::optional<std::string> {
            if (field == "name") {
              return info.name;
            }
            if (field == "parent") {
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

absl::StatusOr<std::vector<std::string>> LocalSnapshotter::Namespaces() {
  absl::MutexLock lock(&mu_);
  return meta_->Namespaces();
}

absl::StatusOr<std::vector<std::string>> LocalSnapshotter::LeaseResources(const Context& ctx) {
  if (absl::Status st = ValidateNs(ctx); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  return meta_->LeaseResources(ctx.ns, ctx.lease);
}

}  // namespace berth::snapshotd
