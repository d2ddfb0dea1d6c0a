#include "services/snapshotd/walking_differ.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "lib/base/logging.h"
#include "services/snapshotd/archive_apply.h"
#include "services/snapshotd/archive_fs.h"
#include "services/snapshotd/diff_applier.h"

namespace berth::snapshotd {

namespace {

using archive::ErrnoStatus;
using archive::ScopedFd;

constexpr size_t kChunk = 1 << 20;
constexpr char kDefaultMediaType[] = "application/vnd.oci.image.layer.v1.tar+gzip";

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : absl::StrCat(dir, "/", name);
}

absl::StatusOr<std::vector<std::string>> SortedNames(const std::string& dir) {
  ScopedFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", dir));
  }
  absl::StatusOr<std::vector<std::string>> names = archive::ListDir(fd.get());
  if (names.ok()) {
    std::sort(names->begin(), names->end());
  }
  return names;
}

using Xattrs = std::map<std::string, std::string>;

absl::StatusOr<Xattrs> ReadXattrs(const std::string& path) {
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
    if (!archive::KeepLayerXattr(key)) {
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

absl::StatusOr<std::string> ReadLink(const std::string& path) {
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
  TarWriter(archive::ByteSink& out, std::string root)
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
    ScopedFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
      return ErrnoStatus(errno, absl::StrCat("open ", path));
    }
    if (buf_ == nullptr) {
      buf_ = std::make_unique<char[]>(kChunk);
    }
    int64_t left = st.st_size;
    while (left > 0) {
      ssize_t n = read(fd.get(), buf_.get(), static_cast<size_t>(std::min<int64_t>(left, kChunk)));
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

  archive::ByteSink& out_;
  const std::string root_;
  struct archive* a_;
  std::set<std::string> dirs_;  // directory entries written
  absl::Status error_;
  std::unique_ptr<char[]> buf_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

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
  ScopedFd fa(open(a.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  ScopedFd fb(open(b.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fa.valid() || !fb.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", a, " or ", b));
  }
  auto ba = std::make_unique<char[]>(kChunk);
  auto bb = std::make_unique<char[]>(kChunk);
  int64_t left = size;
  while (left > 0) {
    size_t want = static_cast<size_t>(std::min<int64_t>(left, kChunk));
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

// Digests and counts what passes, on to `next`.
class CountingSink : public archive::ByteSink {
 public:
  explicit CountingSink(archive::ByteSink& next) : next_(next), digester_(Digester::Sha256()) {}
  absl::Status Write(absl::string_view data) override {
    digester_->Update(data);
    size_ += static_cast<int64_t>(data.size());
    return next_.Write(data);
  }
  absl::Status Close() override { return next_.Close(); }
  Digest digest() const { return digester_->Sum(); }
  int64_t size() const { return size_; }

 private:
  archive::ByteSink& next_;
  std::unique_ptr<Digester> digester_;
  int64_t size_ = 0;
};

// Buffers into 1 MiB writes to a content Writer.
class ContentSink : public archive::ByteSink {
 public:
  explicit ContentSink(content::Writer& writer) : writer_(writer) { buf_.reserve(kChunk); }
  absl::Status Write(absl::string_view data) override {
    buf_.append(data.data(), data.size());
    if (buf_.size() >= kChunk) {
      return Flush();
    }
    return absl::OkStatus();
  }
  absl::Status Close() override { return Flush(); }

 private:
  absl::Status Flush() {
    if (buf_.empty()) {
      return absl::OkStatus();
    }
    absl::Status s = writer_.Write(buf_);
    buf_.clear();
    return s;
  }
  content::Writer& writer_;
  std::string buf_;
};

// The directories a mount list presents, when it needs no mounting: nothing (an empty tree),
// or one bind mount (its source).
std::optional<std::string> PlainDir(const std::vector<mount::Mount>& mounts) {
  if (mounts.empty()) {
    return std::string();
  }
  if (mounts.size() == 1 && (mounts[0].type == "bind" || mounts[0].type == "rbind") &&
      mounts[0].target.empty()) {
    return mounts[0].source;
  }
  return std::nullopt;
}

// The lowerdirs (top first) of `mounts` as a read-only stack: [] for nothing, [source] for a
// bind mount, the lowerdir list of an overlay without an upperdir. nullopt otherwise.
std::optional<std::vector<std::string>> LowerStack(const std::vector<mount::Mount>& mounts) {
  if (mounts.empty()) {
    return std::vector<std::string>();
  }
  if (mounts.size() != 1 || !mounts[0].target.empty()) {
    return std::nullopt;
  }
  const mount::Mount& m = mounts[0];
  if (m.type == "bind" || m.type == "rbind") {
    return std::vector<std::string>{m.source};
  }
  if (m.type == "overlay" && !mount::OptionValue(m.options, "upperdir").has_value()) {
    std::optional<std::string> lowers = mount::OptionValue(m.options, "lowerdir");
    if (!lowers.has_value()) {
      return std::nullopt;
    }
    return std::vector<std::string>(absl::StrSplit(*lowers, ':', absl::SkipEmpty()));
  }
  return std::nullopt;
}

// A read-only mount of `mounts` in a fresh directory under `scratch`, undone on destruction.
class TempMount {
 public:
  TempMount(mount::Mounter& mounter) : mounter_(mounter) {}
  ~TempMount() {
    if (mounted_) {
      absl::Status s = mounter_.Unmount(dir_);
      if (!s.ok()) {
        BERTH_LOG(Warn) << "unmount " << dir_ << ": " << s;
        return;  // leave the directory: something is still mounted there
      }
    }
    if (!dir_.empty()) {
      rmdir(dir_.c_str());
    }
  }
  TempMount(const TempMount&) = delete;
  TempMount& operator=(const TempMount&) = delete;

  absl::Status Mount(std::vector<mount::Mount> mounts, const std::string& scratch) {
    std::string tmpl = absl::StrCat(scratch, "/diff-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      return ErrnoStatus(errno, absl::StrCat("mkdtemp in ", scratch));
    }
    dir_ = tmpl;
    for (mount::Mount& m : mounts) {
      m.options.erase(std::remove(m.options.begin(), m.options.end(), "rw"), m.options.end());
      m.options.push_back("ro");
    }
    absl::Status s = mounter_.MountAll(mounts, dir_);
    if (!s.ok()) {
      return s;
    }
    mounted_ = true;
    return absl::OkStatus();
  }
  const std::string& dir() const { return dir_; }

 private:
  mount::Mounter& mounter_;
  std::string dir_;
  bool mounted_ = false;
};

}  // namespace

absl::Status WriteTreeDiffTar(const std::string& lower_dir, const std::string& upper_dir,
                              archive::ByteSink& out) {
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

absl::Status WriteOverlayUpperTar(const std::string& upperdir, archive::ByteSink& out) {
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

WalkingDiffer::WalkingDiffer(content::Ingester& ingester, WalkingDifferOptions options)
    : ingester_(ingester), options_(std::move(options)) {}

absl::StatusOr<oci::Descriptor> WalkingDiffer::Compare(const Context& ctx,
                                                       const std::vector<mount::Mount>& lower,
                                                       const std::vector<mount::Mount>& upper,
                                                       const diff::CompareOptions& options) {
  const std::string media_type =
      options.media_type.empty() ? std::string(kDefaultMediaType) : options.media_type;
  absl::StatusOr<archive::Compression> compression = archive::CompressionOfMediaType(media_type);
  if (!compression.ok()) {
    return compression.status();
  }
  if (upper.empty()) {
    return absl::InvalidArgumentError("diff: no upper mounts");
  }

  // How to read the changes: the overlay upperdir, or two trees.
  std::optional<std::string> upperdir;
  if (upper.size() == 1 && upper[0].type == "overlay" && upper[0].target.empty()) {
    std::optional<std::string> u = mount::OptionValue(upper[0].options, "upperdir");
    std::optional<std::string> l = mount::OptionValue(upper[0].options, "lowerdir");
    std::optional<std::vector<std::string>> stack = LowerStack(lower);
    if (u.has_value() && stack.has_value()) {
      std::vector<std::string> upper_lowers;
      if (l.has_value()) {
        upper_lowers = absl::StrSplit(*l, ':', absl::SkipEmpty());
      }
      if (upper_lowers == *stack) {
        upperdir = *u;
      }
    }
  }
  mount::Mounter& mounter =
      options_.mounter != nullptr ? *options_.mounter : mount::SystemMounter();
  TempMount lower_mount(mounter);
  TempMount upper_mount(mounter);
  std::string lower_dir;
  std::string upper_dir;
  if (!upperdir.has_value()) {
    std::optional<std::string> l = PlainDir(lower);
    if (l.has_value()) {
      lower_dir = *l;
    } else {
      absl::Status s = lower_mount.Mount(lower, options_.scratch_dir);
      if (!s.ok()) {
        return s;
      }
      lower_dir = lower_mount.dir();
    }
    std::optional<std::string> u = PlainDir(upper);
    if (u.has_value()) {
      upper_dir = *u;
    } else {
      absl::Status s = upper_mount.Mount(upper, options_.scratch_dir);
      if (!s.ok()) {
        return s;
      }
      upper_dir = upper_mount.dir();
    }
  }

  content::WriterOptions wopts;
  wopts.ref = options.ref;
  if (wopts.ref.empty()) {
    absl::BitGen gen;
    wopts.ref = absl::StrFormat("berth-diff-%016x%016x", absl::Uniform<uint64_t>(gen),
                                absl::Uniform<uint64_t>(gen));
  }
  absl::StatusOr<std::unique_ptr<content::Writer>> writer = ingester_.OpenWriter(ctx, wopts);
  if (!writer.ok()) {
    return writer.status();
  }
  content::Writer& w = **writer;
  absl::StatusOr<content::IngestStatus> status = w.Status();
  if (status.ok() && status->offset > 0) {
    absl::Status s = w.Truncate(0);
    if (!s.ok()) {
      w.Close().IgnoreError();
      return s;
    }
  }

  ContentSink content_sink(w);
  CountingSink compressed(content_sink);
  absl::StatusOr<std::unique_ptr<archive::ByteSink>> compressor =
      archive::NewCompressingSink(compressed, *compression, options_.level);
  if (!compressor.ok()) {
    w.Close().IgnoreError();
    return compressor.status();
  }
  CountingSink tar(**compressor);
  absl::Status s = upperdir.has_value() ? WriteOverlayUpperTar(*upperdir, tar)
                                        : WriteTreeDiffTar(lower_dir, upper_dir, tar);
  if (s.ok()) {
    s = tar.Close();
  }
  if (!s.ok()) {
    w.Close().IgnoreError();
    return s;
  }
  content::Labels labels(options.labels.begin(), options.labels.end());
  labels[kUncompressedLabel] = tar.digest().ToString();
  const Digest digest = compressed.digest();
  s = w.Commit(compressed.size(), digest, labels);
  if (!s.ok() && !absl::IsAlreadyExists(s)) {
    return s;
  }
  oci::Descriptor out;
  out.media_type = media_type;
  out.digest = digest;
  out.size = compressed.size();
  BERTH_LOG(Debug) << "diff " << digest.ToString() << " (" << out.size << " bytes, tar "
                   << tar.size() << " bytes, " << (upperdir.has_value() ? "overlay" : "walk")
                   << ")";
  return out;
}

}  // namespace berth::snapshotd
