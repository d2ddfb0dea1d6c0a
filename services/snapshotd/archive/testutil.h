#pragma once

// Test helpers for the diff side: crafted tar layers built with libarchive's write API (names
// are written exactly as given, "../x" and "/abs" included), and a tree snapshot to compare
// two directories. Header-only, for tests.

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/snapshotd/archive/fs.h"

namespace berth::snapshotd::testutil {

struct TarEntry {
  std::string name;
  mode_t type = AE_IFREG;
  mode_t perm = 0644;
  std::string data;
  std::string link;  // symlink target, or hardlink target when hardlink is set
  bool hardlink = false;
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = 1700000000;
  long mtime_nsec = 0;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
};

class TarBuilder {
 public:
  TarEntry& Add(TarEntry e) {
    entries_.push_back(std::move(e));
    return entries_.back();
  }
  TarEntry& File(const std::string& name, const std::string& data, mode_t perm = 0644) {
    TarEntry e;
    e.name = name;
    e.data = data;
    e.perm = perm;
    return Add(std::move(e));
  }
  TarEntry& Dir(const std::string& name, mode_t perm = 0755) {
    TarEntry e;
    e.name = name;
    e.type = AE_IFDIR;
    e.perm = perm;
    return Add(std::move(e));
  }
  TarEntry& Symlink(const std::string& name, const std::string& target) {
    TarEntry e;
    e.name = name;
    e.type = AE_IFLNK;
    e.perm = 0777;
    e.link = target;
    return Add(std::move(e));
  }
  TarEntry& Hardlink(const std::string& name, const std::string& target) {
    TarEntry e;
    e.name = name;
    e.hardlink = true;
    e.link = target;
    return Add(std::move(e));
  }
  TarEntry& Node(const std::string& name, mode_t type, unsigned major = 0, unsigned minor = 0,
                 mode_t perm = 0644) {
    TarEntry e;
    e.name = name;
    e.type = type;
    e.perm = perm;
    e.rdev_major = major;
    e.rdev_minor = minor;
    return Add(std::move(e));
  }

  std::string Build() const {
    std::string out;
    struct archive* a = archive_write_new();
    archive_write_set_format_pax(a);
    archive_write_add_filter_none(a);
    archive_write_open(a, &out, nullptr, &TarBuilder::Write, nullptr);
    for (const TarEntry& t : entries_) {
      struct archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, t.name.c_str());
      archive_entry_set_uid(e, t.uid);
      archive_entry_set_gid(e, t.gid);
      archive_entry_set_mtime(e, t.mtime, t.mtime_nsec);
      archive_entry_set_perm(e, t.perm);
      if (t.hardlink) {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.link.c_str());
        archive_entry_set_size(e, 0);
      } else {
        archive_entry_set_filetype(e, t.type);
        archive_entry_set_size(e, t.type == AE_IFREG ? static_cast<la_int64_t>(t.data.size()) : 0);
        if (t.type == AE_IFLNK) {
          archive_entry_set_symlink(e, t.link.c_str());
        }
        if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
          archive_entry_set_rdevmajor(e, t.rdev_major);
          archive_entry_set_rdevminor(e, t.rdev_minor);
        }
      }
      for (const auto& [k, v] : t.xattrs) {
        archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
      }
      archive_write_header(a, e);
      if (!t.hardlink && t.type == AE_IFREG && !t.data.empty()) {
        archive_write_data(a, t.data.data(), t.data.size());
      }
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return out;
  }

 private:
  static la_ssize_t Write(struct archive*, void* data, const void* buf, size_t n) {
    static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  std::vector<TarEntry> entries_;
};

// One line per entry below `root` (sorted by path): type, mode, owner, size, rdev, mtime,
// link target, xattrs and a content hash, so two trees compare with ==. The root's own line
// leaves out its mtime. `with_dir_mtimes` false leaves out directory mtimes.
inline std::string ReadAllFile(const std::string& path) {
  std::string out;
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return "<unreadable>";
  }
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
    out.append(buf, n);
  }
  fclose(f);
  return out;
}

using InodeGroups = std::map<std::pair<dev_t, ino_t>, std::vector<std::string>>;

inline void DescribeTree(const std::string& root, const std::string& rel, bool with_dir_mtimes,
                         bool with_nlink, std::map<std::string, std::string>* out,
                         InodeGroups* inodes) {
  std::string path = rel.empty() ? root : absl::StrCat(root, "/", rel);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    (*out)[rel] = "<missing>";
    return;
  }
  std::string line = absl::StrCat("mode=", absl::Hex(st.st_mode), " uid=", st.st_uid,
                                  " gid=", st.st_gid);
  if (!S_ISDIR(st.st_mode)) {
    // Hardlink identity: the link count, and (below) which paths share the inode.
    absl::StrAppend(&line, " size=", st.st_size);
    if (with_nlink) {
      absl::StrAppend(&line, " nlink=", st.st_nlink);
    }
    inodes->operator[]({st.st_dev, st.st_ino}).push_back(rel);
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    absl::StrAppend(&line, " rdev=", major(st.st_rdev), ",", minor(st.st_rdev));
  }
  if (!rel.empty() && (with_dir_mtimes || !S_ISDIR(st.st_mode))) {
    absl::StrAppend(&line, " mtime=", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  }
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
    absl::StrAppend(&line, " ->", std::string(buf, n > 0 ? static_cast<size_t>(n) : 0));
  }
  if (S_ISREG(st.st_mode)) {
    absl::StrAppend(&line, " data=", std::hash<std::string>()(ReadAllFile(path)));
  }
  char names[4096];
  ssize_t len = llistxattr(path.c_str(), names, sizeof(names));
  if (len > 0) {
    std::vector<std::string> keys =
        absl::StrSplit(absl::string_view(names, static_cast<size_t>(len)), '\0', absl::SkipEmpty());
    std::sort(keys.begin(), keys.end());
    for (const std::string& k : keys) {
      if (absl::StartsWith(k, "security.selinux")) {
        continue;
      }
      char value[4096];
      ssize_t vn = lgetxattr(path.c_str(), k.c_str(), value, sizeof(value));
      absl::StrAppend(&line, " xattr:", k, "=",
                      std::string(value, vn > 0 ? static_cast<size_t>(vn) : 0));
    }
  }
  (*out)[rel.empty() ? "." : rel] = line;
  if (S_ISDIR(st.st_mode)) {
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    auto names_or = archive::ListDir(fd);
    close(fd);
    if (names_or.ok()) {
      for (const std::string& n : *names_or) {
        DescribeTree(root, rel.empty() ? n : absl::StrCat(rel, "/", n), with_dir_mtimes,
                     with_nlink, out, inodes);
      }
    }
  }
}

inline std::map<std::string, std::string> DescribeTree(const std::string& root,
                                                       bool with_dir_mtimes = true,
                                                       bool with_nlink = true) {
  std::map<std::string, std::string> out;
  InodeGroups inodes;
  DescribeTree(root, "", with_dir_mtimes, with_nlink, &out, &inodes);
  // Paths that are one inode say so (by the group's first path): two trees compare equal only
  // if the same names are hardlinked together in both.
  for (auto& [inode, paths] : inodes) {
    if (paths.size() > 1) {
      std::sort(paths.begin(), paths.end());
      for (const std::string& path : paths) {
        absl::StrAppend(&out[path], " same-inode-as=", paths.front());
      }
    }
  }
  return out;
}

}  // namespace berth::snapshotd::testutil
