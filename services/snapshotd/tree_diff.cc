#include "services/snapshotd/tree_diff.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/base/unique_fd.h"
#include "services/snapshotd/archive/tar_writer.h"

namespace berth::snapshotd {

namespace {

using archive::Join;
using archive::ReadLink;
using archive::ReadXattrs;
using archive::SortedNames;
using archive::TarWriter;
using archive::Xattrs;

absl::Status AddTree(TarWriter& tar, const std::string& path, const std::string& name,
                     const struct stat& st) {
  absl::Status s = tar.Add(path, name, st);
  if (!s.ok() || !S_ISDIR(st.st_mode)) {
    return s;
  }
  absl::StatusOr<std::vector<std::string>> names = SortedNames(path);
  if (!names.ok()) {
    return names.status();
  }
  for (const std::string& child : *names) {
    std::string child_path = absl::StrCat(path, "/", child);
    struct stat cst;
    if (lstat(child_path.c_str(), &cst) != 0) {
      return ErrnoStatus(errno, absl::StrCat("lstat ", child_path));
    }
    s = AddTree(tar, child_path, Join(name, child), cst);
    if (!s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> SameContent(const std::string& a, const std::string& b, int64_t size) {
  UniqueFd fa(open(a.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  UniqueFd fb(open(b.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fa.valid() || !fb.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", a, " or ", b));
  }
  auto ba = std::make_unique<char[]>(archive::kTarChunk);
  auto bb = std::make_unique<char[]>(archive::kTarChunk);
  int64_t left = size;
  while (left > 0) {
    size_t want = static_cast<size_t>(std::min<int64_t>(left, archive::kTarChunk));
    ssize_t na = pread(fa.get(), ba.get(), want, size - left);
    ssize_t nb = pread(fb.get(), bb.get(), want, size - left);
    if (na < 0 || nb < 0) {
      return ErrnoStatus(errno, absl::StrCat("read ", a, " or ", b));
    }
    if (na != nb || na == 0 || memcmp(ba.get(), bb.get(), static_cast<size_t>(na)) != 0) {
      return false;
    }
    left -= na;
  }
  return true;
}

// Whether the entry changed between lower (`lp`, `ls`) and upper (`up`, `us`) of the same type.
absl::StatusOr<bool> Changed(const std::string& lp, const struct stat& ls, const std::string& up,
                             const struct stat& us) {
  if (ls.st_mode != us.st_mode || ls.st_uid != us.st_uid || ls.st_gid != us.st_gid) {
    return true;
  }
  if (ls.st_mtim.tv_sec != us.st_mtim.tv_sec || ls.st_mtim.tv_nsec != us.st_mtim.tv_nsec) {
    return true;
  }
  if ((S_ISCHR(us.st_mode) || S_ISBLK(us.st_mode)) && ls.st_rdev != us.st_rdev) {
    return true;
  }
  if (!S_ISDIR(us.st_mode) && ls.st_size != us.st_size) {
    return true;
  }
  // A new hardlink to an unchanged file: the file goes into the diff again so that the new
  // name can be written as a link to it (and an old name as a link to the new one).
  if (!S_ISDIR(us.st_mode) && ls.st_nlink != us.st_nlink) {
    return true;
  }
  if (S_ISLNK(us.st_mode)) {
    absl::StatusOr<std::string> lt = ReadLink(lp);
    absl::StatusOr<std::string> ut = ReadLink(up);
    if (!lt.ok() || !ut.ok()) {
      return lt.ok() ? ut.status() : lt.status();
    }
    if (*lt != *ut) {
      return true;
    }
  }
  absl::StatusOr<Xattrs> lx = ReadXattrs(lp);
  absl::StatusOr<Xattrs> ux = ReadXattrs(up);
  if (!lx.ok() || !ux.ok()) {
    return lx.ok() ? ux.status() : lx.status();
  }
  if (*lx != *ux) {
    return true;
  }
  if (S_ISREG(us.st_mode) && us.st_mtim.tv_nsec == 0 && us.st_size > 0) {
    // A whole-second mtime may come from a tar without sub-second times: look at the bytes.
    absl::StatusOr<bool> same = SameContent(lp, up, us.st_size);
    if (!same.ok()) {
      return same.status();
    }
    return !*same;
  }
  return false;
}

// The double walk of `rel` (relative to both roots; "" for the roots themselves).
absl::Status DiffDir(TarWriter& tar, const std::string& lower, const std::string& upper,
                     const std::string& rel) {
  const std::string udir = rel.empty() ? upper : absl::StrCat(upper, "/", rel);
  const std::string ldir = rel.empty() ? lower : absl::StrCat(lower, "/", rel);
  absl::StatusOr<std::vector<std::string>> unames = SortedNames(udir);
  if (!unames.ok()) {
    return unames.status();
  }
  absl::StatusOr<std::vector<std::string>> lnames = SortedNames(ldir);
  if (!lnames.ok()) {
    return lnames.status();
  }
  std::set<std::string> all(unames->begin(), unames->end());
  all.insert(lnames->begin(), lnames->end());
  const std::set<std::string> in_upper(unames->begin(), unames->end());
  const std::set<std::string> in_lower(lnames->begin(), lnames->end());
  for (const std::string& name : all) {
    const std::string rel_name = Join(rel, name);
    const std::string up = absl::StrCat(udir, "/", name);
    const std::string lp = absl::StrCat(ldir, "/", name);
    if (in_upper.count(name) == 0) {
      absl::Status s = tar.AddWhiteout(Join(rel, absl::StrCat(".wh.", name)));
      if (!s.ok()) {
        return s;
      }
      continue;
    }
    struct stat us;
    if (lstat(up.c_str(), &us) != 0) {
      return ErrnoStatus(errno, absl::StrCat("lstat ", up));
    }
    if (in_lower.count(name) == 0) {
      absl::Status s = AddTree(tar, up, rel_name, us);
      if (!s.ok()) {
        return s;
      }
      continue;
    }
    struct stat ls;
    if (lstat(lp.c_str(), &ls) != 0) {
      return ErrnoStatus(errno, absl::StrCat("lstat ", lp));
    }
    if ((ls.st_mode & S_IFMT) != (us.st_mode & S_IFMT)) {
      absl::Status s = AddTree(tar, up, rel_name, us);
      if (!s.ok()) {
        return s;
      }
      continue;
    }
    absl::StatusOr<bool> changed = Changed(lp, ls, up, us);
    if (!changed.ok()) {
      return changed.status();
    }
    if (*changed) {
      absl::Status s = tar.Add(up, rel_name, us);
      if (!s.ok()) {
        return s;
      }
    }
    if (S_ISDIR(us.st_mode)) {
      absl::Status s = DiffDir(tar, lower, upper, rel_name);
      if (!s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

bool OverlayXattr(const std::string& path, const char* name, std::string* value) {
  char buf[256];
  ssize_t n = lgetxattr(path.c_str(), name, buf, sizeof(buf));
  if (n < 0) {
    return false;
  }
  if (value != nullptr) {
    value->assign(buf, static_cast<size_t>(n));
  }
  return true;
}

absl::Status UpperDir(TarWriter& tar, const std::string& upper, const std::string& rel) {
  const std::string dir = rel.empty() ? upper : absl::StrCat(upper, "/", rel);
  absl::StatusOr<std::vector<std::string>> names = SortedNames(dir);
  if (!names.ok()) {
    return names.status();
  }
  for (const std::string& name : *names) {
    const std::string path = absl::StrCat(dir, "/", name);
    const std::string rel_name = Join(rel, name);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("lstat ", path));
    }
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      absl::Status s = tar.AddWhiteout(Join(rel, absl::StrCat(".wh.", name)));
      if (!s.ok()) {
        return s;
      }
      continue;
    }
    if (OverlayXattr(path, "trusted.overlay.redirect", nullptr) ||
        OverlayXattr(path, "trusted.overlay.metacopy", nullptr)) {
      return absl::UnimplementedError(absl::StrCat(
          path, " uses overlayfs redirect_dir or metacopy, which the differ cannot read"));
    }
    absl::Status s = tar.Add(path, rel_name, st);
    if (!s.ok()) {
      return s;
    }
    if (S_ISDIR(st.st_mode)) {
      std::string opaque;
      if (OverlayXattr(path, "trusted.overlay.opaque", &opaque) && opaque == "y") {
        s = tar.AddWhiteout(Join(rel_name, ".wh..wh..opq"));
        if (!s.ok()) {
          return s;
        }
      }
      s = UpperDir(tar, upper, rel_name);
      if (!s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteTreeDiffTar(const std::string& lower_dir, const std::string& upper_dir,
                              ByteSink& out) {
  TarWriter tar(out, upper_dir);
  absl::Status s = tar.Open();
  if (!s.ok()) {
    return s;
  }
  if (lower_dir.empty()) {
    absl::StatusOr<std::vector<std::string>> names = SortedNames(upper_dir);
    if (!names.ok()) {
      return names.status();
    }
    for (const std::string& name : *names) {
      std::string path = absl::StrCat(upper_dir, "/", name);
      struct stat st;
      if (lstat(path.c_str(), &st) != 0) {
        return ErrnoStatus(errno, absl::StrCat("lstat ", path));
      }
      s = AddTree(tar, path, name, st);
      if (!s.ok()) {
        return s;
      }
    }
  } else {
    s = DiffDir(tar, lower_dir, upper_dir, "");
    if (!s.ok()) {
      return s;
    }
  }
  return tar.Close();
}

absl::Status WriteOverlayUpperTar(const std::string& upperdir, ByteSink& out) {
  TarWriter tar(out, upperdir);
  absl::Status s = tar.Open();
  if (!s.ok()) {
    return s;
  }
  s = UpperDir(tar, upperdir, "");
  if (!s.ok()) {
    return s;
  }
  return tar.Close();
}

}  // namespace berth::snapshotd
