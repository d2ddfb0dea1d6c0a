#include "services/snapshotd/native_snapshotter.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "services/snapshotd/fs_util.h"

namespace berth::snapshotd {

absl::StatusOr<std::unique_ptr<NativeSnapshotter>> NativeSnapshotter::Open(
    const SnapshotterOptions& options) {
  std::unique_ptr<NativeSnapshotter> s(new NativeSnapshotter(options));
  if (absl::Status st = s->Init(); !st.ok()) {
    return st;
  }
  return s;
}

absl::Status NativeSnapshotter::Populate(const std::string& dir, snapshots::Kind kind,
                                         const std::vector<int64_t>& parents) {
  std::string fs = dir + "/fs";
  if (::mkdir(fs.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkdir ", fs));
  }
  if (parents.empty()) {
    return absl::OkStatus();
  }
  return CopyTree(FsDir(parents.front()), fs);
}

std::vector<mount::Mount> NativeSnapshotter::MountsOf(int64_t id, snapshots::Kind kind,
                                                      const std::vector<int64_t>& parents) const {
  return {{"bind", FsDir(id), "", {kind == snapshots::Kind::kActive ? "rw" : "ro", "rbind"}}};
}

}  // namespace berth::snapshotd
