#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "services/snapshotd/archive/extractor.h"

namespace berth::snapshotd::archive {

namespace {

std::string ProcFdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

absl::Status WriteAll(int fd, const char* data, size_t size, int64_t offset) {
  while (size > 0) {
    ssize_t n = pwrite(fd, data, size, offset);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return PathErrnoStatus(errno, "write");
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return absl::OkStatus();
}

}  // namespace

void Extractor::EntryTimes(struct archive_entry* e, struct timespec times[2]) {
  times[1].tv_sec = archive_entry_mtime(e);
  times[1].tv_nsec = archive_entry_mtime_nsec(e);
  if (archive_entry_atime_is_set(e)) {
    times[0].tv_sec = archive_entry_atime(e);
    times[0].tv_nsec = archive_entry_atime_nsec(e);
  } else {
    times[0] = times[1];
  }
}

absl::StatusOr<UniqueFd> Extractor::MakeDirs(const std::vector<std::string>& comps, size_t count,
                                             int depth) {
  if (depth > kMaxParentLinks) {
    return absl::InvalidArgumentError("too many levels of symbolic links in a parent path");
  }
  UniqueFd prev;
  for (size_t i = 0; i <= count; ++i) {
    UniqueFd fd;
    int err = OpenInRootErrno(root_, comps, i, O_PATH | O_DIRECTORY, ResolveFlags{},
                              options_.resolver, &fd);
    if (err == 0) {
      prev = std::move(fd);
      continue;
    }
    if (err != ENOENT || i == 0) {
      return PathErrnoStatus(err, absl::StrCat("open \"", JoinComponents(comps, i), "\""));
    }
    const std::string& name = comps[i - 1];
    if (absl::StartsWith(name, kWhiteoutPrefix)) {
      return absl::InvalidArgumentError(absl::StrCat("a whiteout name as a directory: ", name));
    }
    if (mkdirat(prev.get(), name.c_str(), 0755) == 0) {
      std::vector<std::string> made(comps.begin(), comps.begin() + static_cast<long>(i));
      Record(made);
      --i;  // reopen it through the resolver
      continue;
    }
    if (errno != EEXIST) {
      return PathErrnoStatus(errno, absl::StrCat("mkdir \"", JoinComponents(comps, i), "\""));
    }
    // A symlink to a directory that does not exist yet: create its target (resolved inside
    // the root, as the kernel would) and go on from there.
    char target[4096];
    ssize_t n = readlinkat(prev.get(), name.c_str(), target, sizeof(target));
    if (n <= 0 || static_cast<size_t>(n) >= sizeof(target)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", JoinComponents(comps, i), "\" exists and is not a directory"));
    }
    std::string t(target, static_cast<size_t>(n));
    std::string joined = t.front() == '/' ? t : absl::StrCat(JoinComponents(comps, i - 1), "/", t);
    std::vector<std::string> next = CleanComponents(joined);
    size_t prefix = next.size();
    next.insert(next.end(), comps.begin() + static_cast<long>(i),
                comps.begin() + static_cast<long>(count));
    return MakeDirs(next, prefix + (count - i), depth + 1);
  }
  return prev;
}

absl::StatusOr<int> Extractor::OpenDir(const std::vector<std::string>& comps, size_t count) {
  std::string key = JoinComponents(comps, count);
  if (cache_valid_ && key == cached_path_) {
    return cached_fd_.get();
  }
  UniqueFd fd;
  int err = OpenInRootErrno(root_, comps, count, O_PATH | O_DIRECTORY, ResolveFlags{},
                            options_.resolver, &fd);
  if (err == ENOENT) {
    absl::StatusOr<UniqueFd> made = MakeDirs(comps, count, 0);
    if (!made.ok()) {
      return made.status();
    }
    fd = std::move(*made);
  } else if (err != 0) {
    return PathErrnoStatus(err, absl::StrCat("open \"", key, "\" inside the root"));
  }
  cached_fd_ = std::move(fd);
  cached_path_ = std::move(key);
  cache_valid_ = true;
  return cached_fd_.get();
}

absl::StatusOr<bool> Extractor::ClearExisting(int parent, const std::string& base,
                                              bool keep_dir) {
  struct stat st;
  if (fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return false;
    }
    return PathErrnoStatus(errno, "stat");
  }
  if (keep_dir && S_ISDIR(st.st_mode)) {
    return true;
  }
  InvalidateCache();
  absl::Status s = RemoveAllAt(parent, base);
  if (!s.ok()) {
    return s;
  }
  return false;
}

absl::Status Extractor::SetXattrs(struct archive_entry* e, const std::string& name, int fd,
                                  const std::string& path) {
  if (archive_entry_xattr_reset(e) == 0) {
    return absl::OkStatus();
  }
  const char* key = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
    if (key == nullptr || !KeepLayerXattr(key)) {
      continue;
    }
    int r = fd >= 0 ? fsetxattr(fd, key, value, size, 0)
                    : lsetxattr(path.c_str(), key, value, size, 0);
    if (r != 0) {
      if (errno == ENOTSUP || (errno == EPERM && absl::StartsWith(key, "user."))) {
        // user.* is refused on symlinks and devices, and some filesystems have no xattrs.
        BERTH_LOG(Debug) << "layer entry \"" << name << "\": xattr " << key << " skipped: "
                         << strerror(errno);
        continue;
      }
      return PathErrnoStatus(errno, absl::StrCat("setxattr ", key));
    }
  }
  return absl::OkStatus();
}

absl::Status Extractor::SetFdMetadata(int fd, struct archive_entry* e, const std::string& name,
                                      bool set_times) {
  // chown first: it clears setuid/setgid bits and file capabilities.
  if (options_.set_owner) {
    if (fchown(fd, static_cast<uid_t>(archive_entry_uid(e)),
               static_cast<gid_t>(archive_entry_gid(e))) != 0) {
      return PathErrnoStatus(errno, "chown");
    }
  }
  if (fchmod(fd, archive_entry_perm(e) & 07777) != 0) {
    return PathErrnoStatus(errno, "chmod");
  }
  absl::Status s = SetXattrs(e, name, fd, std::string());
  if (!s.ok()) {
    return s;
  }
  if (set_times) {
    struct timespec times[2];
    EntryTimes(e, times);
    if (futimens(fd, times) != 0) {
      return PathErrnoStatus(errno, "set times");
    }
  }
  return absl::OkStatus();
}

absl::Status Extractor::Entry(struct archive_entry* e, const std::string& name) {
  std::vector<std::string> comps = CleanComponents(name);
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    if (absl::StartsWith(comps[i], kWhiteoutPrefix)) {
      return Refuse(name, "a whiteout name used as a directory");
    }
  }
  const bool is_link = archive_entry_hardlink(e) != nullptr;
  const mode_t type = archive_entry_filetype(e);
  if (comps.empty()) {
    // "./" or "/": the root's own metadata. Anything else would replace the root.
    if (type != AE_IFDIR || is_link) {
      return Refuse(name, "it would replace the root directory");
    }
    return Directory(e, root_, comps, name);
  }
  const std::string& base = comps.back();
  if (absl::StartsWith(base, kWhiteoutPrefix)) {
    ++stats_.whiteouts;
    return Whiteout(comps, name);
  }
  absl::StatusOr<int> parent = OpenDir(comps, comps.size() - 1);
  if (!parent.ok()) {
    return Fail(parent.status(), name);
  }
  absl::Status s;
  if (is_link) {
    s = Hardlink(e, *parent, base, name);
  } else if (type == AE_IFREG) {
    s = RegularFile(e, *parent, base, name);
  } else if (type == AE_IFDIR) {
    s = Directory(e, *parent, comps, name);
  } else if (type == AE_IFLNK || type == AE_IFIFO || type == AE_IFCHR || type == AE_IFBLK) {
    s = Special(e, *parent, base, name);
  } else if (type == AE_IFSOCK) {
    return absl::OkStatus();  // sockets are not restored
  } else {
    return Refuse(name, absl::StrCat("unknown entry type ", type));
  }
  if (!s.ok()) {
    return absl::StartsWith(s.message(), "layer") ? s : Fail(s, name);
  }
  Record(comps);
  return absl::OkStatus();
}

absl::Status Extractor::Whiteout(const std::vector<std::string>& comps, const std::string& name) {
  const std::string& base = comps.back();
  const size_t dir_count = comps.size() - 1;
  if (base == kOpaqueMarker) {
    absl::StatusOr<int> dir = OpenDir(comps, dir_count);
    if (!dir.ok()) {
      return Fail(dir.status(), name);
    }
    if (options_.whiteouts == WhiteoutMode::kOverlay) {
      UniqueFd real(openat(*dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!real.valid()) {
        return Fail(PathErrnoStatus(errno, "open directory"), name);
      }
      if (fsetxattr(real.get(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
        return Fail(PathErrnoStatus(errno, "setxattr trusted.overlay.opaque"), name);
      }
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<std::string>> children = ListDir(*dir);
    if (!children.ok()) {
      return Fail(children.status(), name);
    }
    const std::string prefix = dir_count == 0 ? "" : JoinComponents(comps, dir_count) + "/";
    int dir_fd = *dir;
    UniqueFd keep(openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!keep.valid()) {
      return Fail(PathErrnoStatus(errno, "open directory"), name);
    }
    for (const std::string& child : *children) {
      if (created_.count(prefix + child) == 0) {
        InvalidateCache();
        absl::Status s = RemoveAllAt(keep.get(), child);
        if (!s.ok()) {
          return Fail(s, name);
        }
      }
    }
    return absl::OkStatus();
  }
  const std::string target = base.substr(kWhiteoutPrefix.size());
  if (target.empty() || target == "." || target == ".." ||
      absl::StartsWith(base, kAufsMetaPrefix)) {
    return Refuse(name, "not a valid whiteout name");
  }
  absl::StatusOr<int> parent = OpenDir(comps, dir_count);
  if (!parent.ok()) {
    return Fail(parent.status(), name);
  }
  int parent_fd = *parent;
  UniqueFd keep(openat(parent_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!keep.valid()) {
    return Fail(PathErrnoStatus(errno, "open directory"), name);
  }
  InvalidateCache();
  absl::Status s = RemoveAllAt(keep.get(), target);
  if (!s.ok()) {
    return Fail(s, name);
  }
  if (options_.whiteouts == WhiteoutMode::kOverlay) {
    if (mknodat(keep.get(), target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return Fail(PathErrnoStatus(errno, "mknod whiteout"), name);
    }
  } else {
    std::vector<std::string> path(comps.begin(), comps.end() - 1);
    path.push_back(target);
    created_.erase(JoinComponents(path, path.size()));
  }
  return absl::OkStatus();
}

absl::Status Extractor::Hardlink(struct archive_entry* e, int parent, const std::string& base,
                                 const std::string& name) {
  std::vector<std::string> target = CleanComponents(archive_entry_hardlink(e));
  if (target.empty()) {
    return Refuse(name, "a hardlink to the root directory");
  }
  // The target must be reachable without any symlink: a link through one could name a file the
  // layer does not own (and outside the root for an absolute symlink).
  ResolveFlags rf;
  rf.no_symlinks = true;
  UniqueFd tparent;
  int err = OpenInRootErrno(root_, target, target.size() - 1, O_PATH | O_DIRECTORY, rf,
                            options_.resolver, &tparent);
  if (err == ELOOP || err == EXDEV) {
    return Refuse(name, absl::StrCat("hardlink target \"", JoinComponents(target, target.size()),
                                     "\" goes through a symlink"));
  }
  if (err == ENOENT || err == ENOTDIR) {
    return Refuse(name, absl::StrCat("hardlink target \"", JoinComponents(target, target.size()),
                                     "\" does not exist"));
  }
  if (err != 0) {
    return PathErrnoStatus(err, absl::StrCat("hardlink target \"",
                                         JoinComponents(target, target.size()), "\""));
  }
  const std::string& tbase = target.back();
  struct stat tst;
  if (fstatat(tparent.get(), tbase.c_str(), &tst, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return Refuse(name, absl::StrCat("hardlink target \"",
                                       JoinComponents(target, target.size()), "\" does not exist"));
    }
    return PathErrnoStatus(errno, absl::StrCat("hardlink target \"",
                                           JoinComponents(target, target.size()), "\""));
  }
  if (S_ISDIR(tst.st_mode)) {
    return Refuse(name, "a hardlink to a directory");
  }
  struct stat st;
  if (fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == tst.st_dev &&
      st.st_ino == tst.st_ino) {
    return absl::OkStatus();  // already that file
  }
  absl::StatusOr<bool> kept = ClearExisting(parent, base, false);
  if (!kept.ok()) {
    return kept.status();
  }
  if (linkat(tparent.get(), tbase.c_str(), parent, base.c_str(), 0) != 0) {
    return PathErrnoStatus(errno, "link");
  }
  return absl::OkStatus();
}

absl::Status Extractor::RegularFile(struct archive_entry* e, int parent, const std::string& base,
                                    const std::string& name) {
  absl::StatusOr<bool> kept = ClearExisting(parent, base, false);
  if (!kept.ok()) {
    return kept.status();
  }
  UniqueFd fd(openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd.valid()) {
    return PathErrnoStatus(errno, "create");
  }
  int64_t end = 0;
  while (true) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(archive_, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) {
      break;
    }
    if (r < ARCHIVE_WARN) {
      return ArchiveError(absl::StrCat("data of \"", name, "\""));
    }
    if (size > 0) {
      absl::Status s = WriteAll(fd.get(), static_cast<const char*>(buf), size, offset);
      if (!s.ok()) {
        return s;
      }
      stats_.file_bytes += static_cast<int64_t>(size);
      end = std::max<int64_t>(end, offset + static_cast<int64_t>(size));
    }
  }
  if (archive_entry_size_is_set(e) && archive_entry_size(e) > end) {
    // A sparse file ending in a hole.
    if (ftruncate(fd.get(), archive_entry_size(e)) != 0) {
      return PathErrnoStatus(errno, "truncate");
    }
  }
  return SetFdMetadata(fd.get(), e, name, true);
}

absl::Status Extractor::Directory(struct archive_entry* e, int parent,
                                  const std::vector<std::string>& comps, const std::string& name) {
  UniqueFd fd;
  if (comps.empty()) {
    fd.Reset(openat(root_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  } else {
    const std::string& base = comps.back();
    absl::StatusOr<bool> kept = ClearExisting(parent, base, true);
    if (!kept.ok()) {
      return kept.status();
    }
    if (!*kept && mkdirat(parent, base.c_str(), 0700) != 0) {
      return PathErrnoStatus(errno, "mkdir");
    }
    fd.Reset(openat(parent, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd.valid()) {
    return PathErrnoStatus(errno, "open directory");
  }
  absl::Status s = SetFdMetadata(fd.get(), e, name, false);
  if (!s.ok()) {
    return s;
  }
  DirTimes t;
  t.path = comps;
  EntryTimes(e, t.times);
  dir_times_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status Extractor::Special(struct archive_entry* e, int parent, const std::string& base,
                                const std::string& name) {
  const mode_t type = archive_entry_filetype(e);
  if ((type == AE_IFCHR || type == AE_IFBLK) && !options_.allow_devices) {
    return Refuse(name, "device nodes are not allowed by the configuration");
  }
  absl::StatusOr<bool> kept = ClearExisting(parent, base, false);
  if (!kept.ok()) {
    return kept.status();
  }
  if (type == AE_IFLNK) {
    const char* target = archive_entry_symlink(e);
    if (target == nullptr) {
      target = archive_entry_symlink_utf8(e);
    }
    if (target == nullptr || *target == '\0') {
      return Refuse(name, "a symlink without a target");
    }
    // The link is created as written; it is only ever resolved inside the root.
    if (symlinkat(target, parent, base.c_str()) != 0) {
      return PathErrnoStatus(errno, "symlink");
    }
    InvalidateCache();
  } else if (type == AE_IFIFO) {
    if (mkfifoat(parent, base.c_str(), 0600) != 0) {
      return PathErrnoStatus(errno, "mkfifo");
    }
  } else {
    dev_t dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
    if (mknodat(parent, base.c_str(), (type == AE_IFCHR ? S_IFCHR : S_IFBLK) | 0600, dev) != 0) {
      return PathErrnoStatus(errno, "mknod");
    }
  }
  // Metadata by name with AT_SYMLINK_NOFOLLOW, never through the node: a symlink is never
  // followed and never chmod'ed.
  if (options_.set_owner) {
    if (fchownat(parent, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                 static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) != 0) {
      return PathErrnoStatus(errno, "chown");
    }
  }
  if (type != AE_IFLNK) {
    // chmod through an O_PATH handle of the node itself (checked not to be a symlink).
    UniqueFd node(openat(parent, base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!node.valid() || fstat(node.get(), &st) != 0) {
      return PathErrnoStatus(errno, "open node");
    }
    if (S_ISLNK(st.st_mode)) {
      return absl::InternalError("node was replaced by a symlink");
    }
    if (fchmodat(AT_FDCWD, ProcFdPath(node.get()).c_str(), archive_entry_perm(e) & 07777, 0) !=
        0) {
      return PathErrnoStatus(errno, "chmod");
    }
  }
  absl::Status s = SetXattrs(e, name, -1, absl::StrCat(ProcFdPath(parent), "/", base));
  if (!s.ok()) {
    return s;
  }
  struct timespec times[2];
  EntryTimes(e, times);
  if (utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathErrnoStatus(errno, "set times");
  }
  return absl::OkStatus();
}

}  // namespace berth::snapshotd::archive
