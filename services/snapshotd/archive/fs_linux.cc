#include "services/snapshotd/archive/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/posix.h"

namespace berth::snapshotd::archive {

std::vector<std::string> CleanComponents(absl::string_view name) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      if (!out.empty()) {
        out.pop_back();
      }
      continue;
    }
    out.emplace_back(part);
  }
  return out;
}

std::string JoinComponents(const std::vector<std::string>& components, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < components.size(); ++i) {
    if (i > 0) {
      out.push_back('/');
    }
    out += components[i];
  }
  return out;
}

absl::Status PathErrnoStatus(int err, absl::string_view what) {
  if (err == ELOOP || err == EXDEV) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", strerror(err), " (the path escapes the root)"));
  }
  return ErrnoStatus(err, what);
}

namespace {

int Openat2(int root_fd, const std::string& path, int flags, ResolveFlags resolve) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | (resolve.follow_last ? 0 : O_NOFOLLOW));
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  if (resolve.no_symlinks) {
    how.resolve |= RESOLVE_NO_SYMLINKS;
  }
  const char* p = path.empty() ? "." : path.c_str();
  for (int attempt = 0; attempt < 16; ++attempt) {
    long fd = syscall(SYS_openat2, root_fd, p, &how, sizeof(how));
    if (fd >= 0) {
      return static_cast<int>(fd);
    }
    if (errno != EAGAIN && errno != EINTR) {
      return -1;
    }
  }
  return -1;
}

constexpr int kMaxSymlinks = 40;

// The fallback: one component at a time, each opened O_PATH|O_NOFOLLOW relative to the last
// directory reached; symlinks are read and their targets pushed back onto the work list, an
// absolute target restarting at the root and ".." never popping past it.
int WalkResolve(int root_fd, const std::vector<std::string>& path, size_t count, int flags,
                ResolveFlags resolve, UniqueFd* out) {
  std::vector<UniqueFd> stack;
  std::deque<std::string> todo(path.begin(), path.begin() + std::min(count, path.size()));
  int links = 0;
  while (!todo.empty()) {
    std::string component = std::move(todo.front());
    todo.pop_front();
    if (component.empty() || component == ".") {
      continue;
    }
    if (component == "..") {
      if (!stack.empty()) {
        stack.pop_back();
      }
      continue;
    }
    const bool last = todo.empty();
    const int cur = stack.empty() ? root_fd : stack.back().get();
    UniqueFd fd(openat(cur, component.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
      return errno;
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0) {
      return errno;
    }
    if (S_ISLNK(st.st_mode)) {
      if (resolve.no_symlinks) {
        return ELOOP;
      }
      if (last && !resolve.follow_last) {
        if ((flags & O_PATH) != 0 && (flags & O_DIRECTORY) == 0) {
          *out = std::move(fd);
          return 0;
        }
        return ELOOP;
      }
      if (++links > kMaxSymlinks) {
        return ELOOP;
      }
      char target[4096];
      ssize_t n = readlinkat(fd.get(), "", target, sizeof(target));
      if (n < 0) {
        return errno;
      }
      if (n == 0 || static_cast<size_t>(n) >= sizeof(target)) {
        return ENOENT;
      }
      absl::string_view link(target, static_cast<size_t>(n));
      if (link.front() == '/') {
        stack.clear();
      }
      std::vector<std::string> parts = absl::StrSplit(link, '/', absl::SkipEmpty());
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        todo.push_front(std::move(*it));
      }
      continue;
    }
    if (!last) {
      if (!S_ISDIR(st.st_mode)) {
        return ENOTDIR;
      }
      stack.push_back(std::move(fd));
      continue;
    }
    if ((flags & O_DIRECTORY) != 0 && !S_ISDIR(st.st_mode)) {
      return ENOTDIR;
    }
    if ((flags & O_PATH) != 0) {
      *out = std::move(fd);
      return 0;
    }
    // Reopen for real; O_NOFOLLOW guards against the entry having been swapped for a link.
    UniqueFd real(openat(cur, component.c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
    if (!real.valid()) {
      return errno;
    }
    *out = std::move(real);
    return 0;
  }
  // The root itself.
  UniqueFd real(openat(root_fd, ".", flags | O_CLOEXEC));
  if (!real.valid()) {
    return errno;
  }
  *out = std::move(real);
  return 0;
}

}  // namespace

bool HaveOpenat2() {
  static const bool have = [] {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT;
    long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
    if (fd >= 0) {
      close(static_cast<int>(fd));
      return true;
    }
    return errno != ENOSYS;
  }();
  return have;
}

int OpenInRootErrno(int root_fd, const std::vector<std::string>& path, size_t count,
                    int flags, ResolveFlags resolve, Resolver resolver, UniqueFd* out) {
  if (resolver == Resolver::kAuto) {
    resolver = HaveOpenat2() ? Resolver::kOpenat2 : Resolver::kWalk;
  }
  if (resolver == Resolver::kWalk) {
    return WalkResolve(root_fd, path, count, flags, resolve, out);
  }
  int fd = Openat2(root_fd, JoinComponents(path, count), flags, resolve);
  if (fd < 0) {
    return errno;
  }
  out->Reset(fd);
  return 0;
}

absl::StatusOr<UniqueFd> OpenInRoot(int root_fd, const std::vector<std::string>& path,
                                    size_t count, int flags, ResolveFlags resolve,
                                    Resolver resolver) {
  UniqueFd fd;
  int err = OpenInRootErrno(root_fd, path, count, flags, resolve, resolver, &fd);
  if (err != 0) {
    return PathErrnoStatus(err, absl::StrCat("open \"", JoinComponents(path, count),
                                         "\" inside the root"));
  }
  return fd;
}

absl::StatusOr<std::vector<std::string>> ListDir(int dir_fd) {
  int dup_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) {
    return PathErrnoStatus(errno, "open directory");
  }
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    int err = errno;
    close(dup_fd);
    return PathErrnoStatus(err, "fdopendir");
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* ent = readdir(dir)) {
    absl::string_view name(ent->d_name);
    if (name != "." && name != "..") {
      names.emplace_back(name);
    }
  }
  int err = errno;
  closedir(dir);
  if (err != 0) {
    return PathErrnoStatus(err, "readdir");
  }
  return names;
}

absl::Status RemoveAllAt(int dir_fd, const std::string& name) {
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return absl::OkStatus();
    }
    return PathErrnoStatus(errno, absl::StrCat("stat ", name));
  }
  if (S_ISDIR(st.st_mode)) {
    UniqueFd child(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child.valid()) {
      return PathErrnoStatus(errno, absl::StrCat("open ", name));
    }
    absl::StatusOr<std::vector<std::string>> names = ListDir(child.get());
    if (!names.ok()) {
      return names.status();
    }
    for (const std::string& n : *names) {
      absl::Status s = RemoveAllAt(child.get(), n);
      if (!s.ok()) {
        return s;
      }
    }
    if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return PathErrnoStatus(errno, absl::StrCat("rmdir ", name));
    }
    return absl::OkStatus();
  }
  if (unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
    return PathErrnoStatus(errno, absl::StrCat("unlink ", name));
  }
  return absl::OkStatus();
}

}  // namespace berth::snapshotd::archive
