#include "services/snapshotd/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"

namespace berth::snapshotd {

namespace {

using InodeId = std::pair<dev_t, ino_t>;

// The names in directory `path` (without "." and "..").
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    return ErrnoStatus(errno, absl::StrCat("opendir ", path));
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) {
      continue;
    }
    names.emplace_back(e->d_name);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) {
    return ErrnoStatus(err, absl::StrCat("readdir ", path));
  }
  return names;
}

absl::Status UsageOf(const std::string& path, dev_t dev, std::set<InodeId>* seen,
                     DiskUsage* usage) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::OkStatus();  // removed while we walked
    }
    return ErrnoStatus(errno, absl::StrCat("lstat ", path));
  }
  if (st.st_dev != dev) {
    return absl::OkStatus();
  }
  if (seen->insert({st.st_dev, st.st_ino}).second) {
    usage->inodes++;
    usage->size += static_cast<int64_t>(st.st_blocks) * 512;
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<std::string>> names = ListDir(path);
  if (!names.ok()) {
    return names.status();
  }
  for (const std::string& name : *names) {
    if (absl::Status s = UsageOf(absl::StrCat(path, "/", name), dev, seen, usage); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

bool XattrUnsupported(int err) { return err == ENOTSUP || err == EOPNOTSUPP; }

absl::Status CopyXattrs(const std::string& src, const std::string& dst) {
  ssize_t n = ::llistxattr(src.c_str(), nullptr, 0);
  if (n < 0) {
    return XattrUnsupported(errno) ? absl::OkStatus()
                                   : ErrnoStatus(errno, absl::StrCat("llistxattr ", src));
  }
  if (n == 0) {
    return absl::OkStatus();
  }
  std::string names(static_cast<size_t>(n), '\0');
  n = ::llistxattr(src.c_str(), names.data(), names.size());
  if (n < 0) {
    return ErrnoStatus(errno, absl::StrCat("llistxattr ", src));
  }
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.empty()) {
      continue;
    }
    ssize_t len = ::lgetxattr(src.c_str(), name.c_str(), nullptr, 0);
    if (len < 0) {
      if (errno == ENODATA) {
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("lgetxattr ", name, " of ", src));
    }
    std::string value(static_cast<size_t>(len), '\0');
    len = ::lgetxattr(src.c_str(), name.c_str(), value.data(), value.size());
    if (len < 0) {
      return ErrnoStatus(errno, absl::StrCat("lgetxattr ", name, " of ", src));
    }
    value.resize(static_cast<size_t>(len));
    if (::lsetxattr(dst.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      if (XattrUnsupported(errno)) {
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("lsetxattr ", name, " of ", dst));
    }
  }
  return absl::OkStatus();
}

absl::Status CopyFileData(const std::string& src, const std::string& dst, mode_t mode) {
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) {
    return ErrnoStatus(errno, absl::StrCat("open ", src));
  }
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                   mode & 0777);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ErrnoStatus(err, absl::StrCat("create ", dst));
  }
  absl::Status status;
  bool use_copy_range = true;
  std::string buf;
  while (true) {
    ssize_t n = -1;
    if (use_copy_range) {
      n = ::copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
        use_copy_range = false;
        continue;
      }
    } else {
      if (buf.empty()) {
        buf.resize(1 << 20);
      }
      n = ::read(in, buf.data(), buf.size());
      for (ssize_t off = 0; n > 0 && off < n;) {
        ssize_t w = ::write(out, buf.data() + off, static_cast<size_t>(n - off));
        if (w < 0) {
          if (errno == EINTR) {
            continue;
          }
          n = -1;
          break;
        }
        off += w;
      }
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      status = ErrnoStatus(errno, absl::StrCat("copy ", src, " to ", dst));
      break;
    }
    if (n == 0) {
      break;
    }
  }
  ::close(in);
  if (::close(out) != 0 && status.ok()) {
    status = ErrnoStatus(errno, absl::StrCat("close ", dst));
  }
  return status;
}

// Owner, mode, xattrs, then times (last: the others touch ctime only, but xattrs and chmod
// must not be undone by a later step). chown clears setuid/setgid, so chmod comes after it.
absl::Status CopyMetadata(const std::string& src, const std::string& dst, const struct stat& st) {
  if (::lchown(dst.c_str(), st.st_uid, st.st_gid) != 0) {
    return ErrnoStatus(errno, absl::StrCat("lchown ", dst));
  }
  if (!S_ISLNK(st.st_mode)) {
    if (::chmod(dst.c_str(), st.st_mode & 07777) != 0) {
      return ErrnoStatus(errno, absl::StrCat("chmod ", dst));
    }
  }
  if (absl::Status s = CopyXattrs(src, dst); !s.ok()) {
    return s;
  }
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(AT_FDCWD, dst.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus(errno, absl::StrCat("utimensat ", dst));
  }
  return absl::OkStatus();
}

class TreeCopier {
 public:
  explicit TreeCopier(dev_t dev) : dev_(dev) {}

  absl::Status CopyDirContents(const std::string& src, const std::string& dst) {
    absl::StatusOr<std::vector<std::string>> names = ListDir(src);
    if (!names.ok()) {
      return names.status();
    }
    for (const std::string& name : *names) {
      if (absl::Status s = CopyEntry(absl::StrCat(src, "/", name), absl::StrCat(dst, "/", name));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status CopyEntry(const std::string& src, const std::string& dst) {
    struct stat st;
    if (::lstat(src.c_str(), &st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("lstat ", src));
    }
    if (st.st_dev != dev_) {
      return absl::OkStatus();  // a mount inside the tree is not part of it
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto it = links_.find({st.st_dev, st.st_ino});
      if (it != links_.end()) {
        if (::link(it->second.c_str(), dst.c_str()) != 0) {
          return ErrnoStatus(errno, absl::StrCat("link ", dst, " to ", it->second));
        }
        return absl::OkStatus();
      }
      links_[{st.st_dev, st.st_ino}] = dst;
    }
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR:
        if (::mkdir(dst.c_str(), 0700) != 0) {
          return ErrnoStatus(errno, absl::StrCat("mkdir ", dst));
        }
        if (absl::Status s = CopyDirContents(src, dst); !s.ok()) {
          return s;
        }
        break;
      case S_IFREG:
        if (absl::Status s = CopyFileData(src, dst, st.st_mode); !s.ok()) {
          return s;
        }
        break;
      case S_IFLNK: {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlink(src.c_str(), target.data(), target.size());
        if (n < 0) {
          return ErrnoStatus(errno, absl::StrCat("readlink ", src));
        }
        target.resize(static_cast<size_t>(n));
        if (::symlink(target.c_str(), dst.c_str()) != 0) {
          return ErrnoStatus(errno, absl::StrCat("symlink ", dst));
        }
        break;
      }
      case S_IFIFO:
      case S_IFSOCK:
      case S_IFCHR:
      case S_IFBLK:
        if (::mknod(dst.c_str(), st.st_mode, st.st_rdev) != 0) {
          return ErrnoStatus(errno, absl::StrCat("mknod ", dst));
        }
        break;
      default:
        return absl::InternalError(absl::StrCat("copy ", src, ": unknown file type"));
    }
    return CopyMetadata(src, dst, st);
  }

  dev_t dev_;
  std::map<InodeId, std::string> links_;  // first copy of each multiply-linked inode
};

absl::Status RemoveBelow(const std::string& path, dev_t dev) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? absl::OkStatus() : ErrnoStatus(errno, absl::StrCat("lstat ", path));
  }
  if (st.st_dev != dev) {
    return absl::FailedPreconditionError(
        absl::StrCat("remove ", path, ": another filesystem is mounted there"));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("unlink ", path));
    }
    return absl::OkStatus();
  }
  // Overlay's work/work is mode 000; make sure we can list and empty every directory.
  if ((st.st_mode & 0700) != 0700) {
    (void)::chmod(path.c_str(), 0700);
  }
  absl::StatusOr<std::vector<std::string>> names = ListDir(path);
  if (!names.ok()) {
    return names.status();
  }
  for (const std::string& name : *names) {
    if (absl::Status s = RemoveBelow(absl::StrCat(path, "/", name), dev); !s.ok()) {
      return s;
    }
  }
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("rmdir ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DiskUsage> ComputeDiskUsage(const std::string& root) {
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("lstat ", root));
  }
  DiskUsage usage;
  std::set<InodeId> seen;
  if (absl::Status s = UsageOf(root, st.st_dev, &seen, &usage); !s.ok()) {
    return s;
  }
  return usage;
}

absl::Status CopyTree(const std::string& src, const std::string& dst) {
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("lstat ", src));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("copy ", src, ": not a directory"));
  }
  TreeCopier copier(st.st_dev);
  if (absl::Status s = copier.CopyDirContents(src, dst); !s.ok()) {
    return s;
  }
  return CopyMetadata(src, dst, st);
}

absl::Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? absl::OkStatus() : ErrnoStatus(errno, absl::StrCat("lstat ", path));
  }
  return RemoveBelow(path, st.st_dev);
}

}  // namespace berth::snapshotd
