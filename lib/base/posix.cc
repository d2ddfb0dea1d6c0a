#include "lib/base/posix.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "lib/base/random.h"
#include "lib/base/unique_fd.h"

namespace berth {

absl::Status ErrnoStatus(int err, absl::string_view what) { return absl::ErrnoToStatus(err, what); }

absl::Status MakeDirs(const std::string& path, mode_t mode, mode_t parent_mode) {
  if (path.empty()) {
    return absl::InvalidArgumentError("directory path is empty");
  }
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    bool last = slash == std::string::npos;
    std::string prefix = last ? path : path.substr(0, slash);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), last ? mode : parent_mode) != 0 &&
        errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("create directory ", prefix));
    }
    if (last) {
      break;
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", path));
  }
  if (::fsync(fd.get()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fsync ", path));
  }
  return absl::OkStatus();
}

namespace {

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode,
                             Durability durability) {
  const bool durable = durability == Durability::kDurable;
  std::string tmp = absl::StrCat(path, ".tmp-", RandomHex(6));
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  }
  absl::Status st = WriteAll(fd.get(), data, tmp);
  if (st.ok() && ::fchmod(fd.get(), mode) != 0) {  // the umask does not narrow it
    st = ErrnoStatus(errno, absl::StrCat("chmod ", tmp));
  }
  if (st.ok() && durable && ::fsync(fd.get()) != 0) {
    st = ErrnoStatus(errno, absl::StrCat("fsync ", tmp));
  }
  fd.Reset();
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = ErrnoStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return durable ? FsyncDir(DirOf(path)) : absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", path));
  }
  return ReadAll(fd.get(), path);
}

absl::StatusOr<std::string> ReadAll(int fd, absl::string_view what, size_t max_size) {
  std::string data;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("read ", what));
    }
    if (n == 0) {
      return data;
    }
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > max_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": larger than ", max_size, " bytes"));
    }
  }
}

}  // namespace berth
