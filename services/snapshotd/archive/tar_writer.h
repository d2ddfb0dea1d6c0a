#pragma once

// Writing layer tars from a filesystem tree (the Diff side; apply.h is the other direction):
// TarWriter adds entries (PAX, with xattrs, hardlinks by inode, OCI whiteouts, parents before
// children) to a ByteSink, and the small readers it and the tree walk share. Header-only: a
// class and helpers used by tree_diff.cc only, kept as they were written.

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/byte_stream.h"
#include "lib/base/posix.h"
#include "lib/base/unique_fd.h"
#include "services/snapshotd/archive/apply.h"
#include "services/snapshotd/archive/fs.h"

namespace berth::snapshotd::archive {

inline constexpr size_t kTarChunk = 1 << 20;

inline std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : absl::StrCat(dir, "/", name);
}

inline absl::StatusOr<std::vector<std::string>> SortedNames(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", dir));
  }
  absl::StatusOr<std::vector<std::string>> names = ListDir(fd.get());
  if (names.ok()) {
    std::sort(names->begin(), names->end());
  }
  return names;
}

using Xattrs = std::map<std::string, std::string>;

inline absl::StatusOr<Xattrs> ReadXattrs(const std::string& path) {
  Xattrs out;
  ssize_t len = llistxattr(path.c_str(), nullptr, 0);
  if (len < 0) {
    if (errno == ENOTSUP) {
      return out;
    }
    return ErrnoStatus(errno, absl::StrCat("listxattr ", path));
  }
  std::string names(static_cast<size_t>(len), '\0');
  len = llistxattr(path.c_str(), names.data(), names.size());
  if (len < 0) {
    return ErrnoStatus(errno, absl::StrCat("listxattr ", path));
  }
  names.resize(static_cast<size_t>(len));
  for (absl::string_view name : absl::StrSplit(names, '\0', absl::SkipEmpty())) {
    std::string key(name);
    if (!KeepLayerXattr(key)) {
      continue;
    }
    ssize_t vlen = lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
    if (vlen < 0) {
      continue;  // removed meanwhile
    }
    std::string value(static_cast<size_t>(vlen), '\0');
    vlen = lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
    if (vlen < 0) {
      continue;
    }
    value.resize(static_cast<size_t>(vlen));
    out.emplace(std::move(key), std::move(value));
  }
  return out;
}

inline absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  if (n < 0) {
    return ErrnoStatus(errno, absl::StrCat("readlink ", path));
  }
  return std::string(buf, static_cast<size_t>(n));
}

// Writes tar entries (PAX) to a ByteSink.
class TarWriter {
 public:
  // `root`: the tree entries come from, for the parent directories EnsureParents adds.
  TarWriter(ByteSink& out, std::string root)
      : out_(out), root_(std::move(root)), a_(archive_write_new()) {}
  ~TarWriter() {
    if (a_ != nullptr) {
      archive_write_free(a_);
    }
  }
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  absl::Status Open() {
    if (a_ == nullptr) {
      return absl::ResourceExhaustedError("archive_write_new failed");
    }
    if (archive_write_set_format_pax(a_) != ARCHIVE_OK ||
        archive_write_add_filter_none(a_) != ARCHIVE_OK ||
        archive_write_open(a_, this, nullptr, &TarWriter::WriteCallback, nullptr) != ARCHIVE_OK) {
      return Error("open tar writer");
    }
    return absl::OkStatus();
  }

  // Adds the file at `path` (lstat'ed as `st`) under `name`: a hardlink entry when an earlier
  // entry had the same inode.
  absl::Status Add(const std::string& path, const std::string& name, const struct stat& st) {
    absl::Status parents = EnsureParents(name);
    if (!parents.ok()) {
      return parents;
    }
    if (S_ISDIR(st.st_mode)) {
      dirs_.insert(name);
    }
    std::unique_ptr<struct archive_entry, void (*)(struct archive_entry*)> e(archive_entry_new(),
                                                                            archive_entry_free);
    archive_entry_copy_stat(e.get(), &st);
    archive_entry_set_pathname(e.get(), name.c_str());
    // Reproducible layers: no access, change or birth times.
    archive_entry_unset_atime(e.get());
    archive_entry_unset_ctime(e.get());
    archive_entry_unset_birthtime(e.get());
    archive_entry_set_ino64(e.get(), 0);
    archive_entry_set_dev(e.get(), 0);
    archive_entry_set_nlink(e.get(), 1);
    const bool regular = S_ISREG(st.st_mode);
    if (!regular) {
      archive_entry_set_size(e.get(), 0);
    }
    if (S_ISLNK(st.st_mode)) {
      absl::StatusOr<std::string> target = ReadLink(path);
      if (!target.ok()) {
        return target.status();
      }
      archive_entry_set_symlink(e.get(), target->c_str());
    }
    if (regular && st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links_.find(key);
      if (it != links_.end()) {
        archive_entry_set_hardlink(e.get(), it->second.c_str());
        archive_entry_set_size(e.get(), 0);
        return WriteHeader(e.get(), name);
      }
      links_.emplace(key, name);
    }
    absl::StatusOr<Xattrs> xattrs = ReadXattrs(path);
    if (!xattrs.ok()) {
      return xattrs.status();
    }
    for (const auto& [key, value] : *xattrs) {
      archive_entry_xattr_add_entry(e.get(), key.c_str(), value.data(), value.size());
    }
    absl::Status s = WriteHeader(e.get(), name);
    if (!s.ok() || !regular || st.st_size == 0) {
      return s;
    }
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
      return ErrnoStatus(errno, absl::StrCat("open ", path));
    }
    if (buf_ == nullptr) {
      buf_ = std::make_unique<char[]>(kTarChunk);
    }
    int64_t left = st.st_size;
    while (left > 0) {
      ssize_t n =
          read(fd.get(), buf_.get(), static_cast<size_t>(std::min<int64_t>(left, kTarChunk)));
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return ErrnoStatus(errno, absl::StrCat("read ", path));
      }
      if (n == 0) {
        return absl::FailedPreconditionError(absl::StrCat(path, " shrank while being diffed"));
      }
      if (archive_write_data(a_, buf_.get(), static_cast<size_t>(n)) < 0) {
        return Error(absl::StrCat("write data of ", name));
      }
      left -= n;
    }
    return absl::OkStatus();
  }

  // An OCI whiteout entry (an empty regular file) named `name`.
  absl::Status AddWhiteout(const std::string& name) {
    absl::Status parents = EnsureParents(name);
    if (!parents.ok()) {
      return parents;
    }
    std::unique_ptr<struct archive_entry, void (*)(struct archive_entry*)> e(archive_entry_new(),
                                                                            archive_entry_free);
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0);
    archive_entry_set_size(e.get(), 0);
    archive_entry_set_mtime(e.get(), 0, 0);
    return WriteHeader(e.get(), name);
  }

  absl::Status Close() {
    if (archive_write_close(a_) != ARCHIVE_OK) {
      return Error("close tar");
    }
    return absl::OkStatus();
  }

 private:
  // Every entry's parent directories precede it in the tar (as containerd's writer does), so
  // the applier restores their metadata and mtimes, which creating the entry changes.
  absl::Status EnsureParents(const std::string& name) {
    for (size_t pos = name.find('/'); pos != std::string::npos; pos = name.find('/', pos + 1)) {
      std::string parent = name.substr(0, pos);
      if (dirs_.count(parent) != 0) {
        continue;
      }
      std::string path = absl::StrCat(root_, "/", parent);
      struct stat st;
      if (lstat(path.c_str(), &st) != 0) {
        return ErrnoStatus(errno, absl::StrCat("lstat ", path));
      }
      absl::Status s = Add(path, parent, st);
      if (!s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  static la_ssize_t WriteCallback(struct archive* a, void* data, const void* buf, size_t n) {
    auto* self = static_cast<TarWriter*>(data);
    absl::Status s = self->out_.Write(absl::string_view(static_cast<const char*>(buf), n));
    if (!s.ok()) {
      self->error_ = s;
      archive_set_error(a, EIO, "%s", std::string(s.message()).c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }

  absl::Status WriteHeader(struct archive_entry* e, const std::string& name) {
    if (archive_write_header(a_, e) < ARCHIVE_WARN) {
      return Error(absl::StrCat("write header of ", name));
    }
    return absl::OkStatus();
  }

  absl::Status Error(const std::string& what) {
    if (!error_.ok()) {
      return error_;
    }
    const char* msg = archive_error_string(a_);
    return absl::InternalError(absl::StrCat(what, ": ", msg != nullptr ? msg : "libarchive error"));
  }

  ByteSink& out_;
  const std::string root_;
  struct archive* a_;
  std::set<std::string> dirs_;  // directory entries written
  absl::Status error_;
  std::unique_ptr<char[]> buf_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace berth::snapshotd::archive
