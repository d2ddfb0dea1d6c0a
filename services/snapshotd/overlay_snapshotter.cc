#include "services/snapshotd/overlay_snapshotter.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "services/snapshotd/fs_util.h"

namespace berth::snapshotd {

namespace {

absl::Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<OverlaySnapshotter>> OverlaySnapshotter::Open(
    const SnapshotterOptions& options) {
  std::unique_ptr<OverlaySnapshotter> s(new OverlaySnapshotter(options));
  if (absl::Status st = s->Init(); !st.ok()) {
    return st;
  }
  if (absl::Status st = s->CheckOverlay(); !st.ok()) {
    return st;
  }
  return s;
}

absl::Status OverlaySnapshotter::CheckOverlay() {
  // In a tmp-* directory, so a crash halfway leaves nothing Cleanup does not remove.
  std::string dir = absl::StrCat(SnapshotsDir(), "/", TempName());
  absl::Status status = MakeDir(dir, 0700);
  for (const char* sub : {"/lower1", "/lower2", "/upper", "/work", "/merged"}) {
    if (status.ok()) {
      status = MakeDir(dir + sub, 0755);
    }
  }
  mount::Mounter& mounter =
      options().mounter != nullptr ? *options().mounter : mount::SystemMounter();
  if (status.ok()) {
    status = mounter.MountAll(
        {{"overlay", "overlay", "",
          {absl::StrCat("workdir=", dir, "/work"), absl::StrCat("upperdir=", dir, "/upper"),
           absl::StrCat("lowerdir=", dir, "/lower2:", dir, "/lower1")}}},
        dir + "/merged");
    if (status.ok()) {
      status = mounter.Unmount(dir + "/merged");
    }
  }
  if (absl::Status st = RemoveTree(dir); !st.ok()) {
    BERTH_LOG(Warn) << "snapshotd: " << st << " (Cleanup retries)";
  }
  if (!status.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("overlayfs does not work on ", root(), ": ", status.message(),
                     " (use the \"native\" snapshotter)"));
  }
  return absl::OkStatus();
}

absl::Status OverlaySnapshotter::Populate(const std::string& dir, snapshots::Kind kind,
                                          const std::vector<int64_t>& parents) {
  std::string fs = dir + "/fs";
  if (absl::Status st = MakeDir(fs, 0755); !st.ok()) {
    return st;
  }
  if (kind == snapshots::Kind::kActive) {
    if (absl::Status st = MakeDir(dir + "/work", 0711); !st.ok()) {
      return st;
    }
  }
  if (!parents.empty()) {
    // The upper dir is the merged root: give it the parent root's owner (as containerd does).
    struct stat st;
    std::string parent_fs = FsDir(parents.front());
    if (::stat(parent_fs.c_str(), &st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("stat ", parent_fs));
    }
    if (::lchown(fs.c_str(), st.st_uid, st.st_gid) != 0) {
      return ErrnoStatus(errno, absl::StrCat("chown ", fs));
    }
  }
  return absl::OkStatus();
}

std::vector<mount::Mount> OverlaySnapshotter::MountsOf(int64_t id, snapshots::Kind kind,
                                                       const std::vector<int64_t>& parents) const {
  const bool active = kind == snapshots::Kind::kActive;
  if (parents.empty()) {
    return {{"bind", FsDir(id), "", {active ? "rw" : "ro", "rbind"}}};
  }
  if (!active && parents.size() == 1) {
    return {{"bind", FsDir(parents.front()), "", {"ro", "rbind"}}};
  }
  std::vector<std::string> lowers;
  lowers.reserve(parents.size());
  for (int64_t p : parents) {
    lowers.push_back(FsDir(p));
  }
  std::vector<std::string> options;
  if (active) {
    options.push_back(absl::StrCat("workdir=", WorkDir(id)));
    options.push_back(absl::StrCat("upperdir=", FsDir(id)));
  }
  options.push_back(absl::StrCat("lowerdir=", absl::StrJoin(lowers, ":")));
  return {{"overlay", "overlay", "", std::move(options)}};
}

}  // namespace berth::snapshotd
