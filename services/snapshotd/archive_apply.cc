#include "services/snapshotd/archive_apply.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"

namespace berth::snapshotd::archive {

namespace {

constexpr size_t kReadChunk = 1 << 20;
constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr absl::string_view kAufsMetaPrefix = ".wh..wh.";
constexpr int kMaxParentLinks = 40;

struct ReadContext {
  ByteSource* source = nullptr;
  std::unique_ptr<char[]> buf;
  absl::Status status;
  int64_t total = 0;
  int64_t limit = 0;
};

// Tars written without their closing blocks are common in the wild (umoci 0.4 ends a layer
// right after the last file's data: no padding to 512 bytes, no end-of-archive blocks), and
// containerd's Go reader accepts them. libarchive does not. This source follows the tar block
// structure of what passes through, and at the end of the input, if it ended exactly at an
// entry boundary or right after an entry's last data byte, supplies the missing zero padding
// and end-of-archive blocks. A stream cut anywhere else (inside a header or inside a file's
// data) is left as it is, so libarchive still reports it truncated. The bytes added are never
// part of the layer's digest, which is computed on the input before this point.
class TarEndCompletion : public ByteSource {
 public:
  explicit TarEndCompletion(ByteSource& inner) : inner_(inner) {}

  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    if (!tail_.empty()) {
      size_t n = std::min(size, tail_.size() - tail_pos_);
      std::memcpy(buf, tail_.data() + tail_pos_, n);
      tail_pos_ += n;
      return n;
    }
    absl::StatusOr<size_t> n = inner_.Read(buf, size);
    if (!n.ok()) {
      return n;
    }
    if (*n > 0) {
      Track(buf, *n);
      return n;
    }
    if (!CompleteTail()) {
      return 0;
    }
    return Read(buf, size);
  }

 private:
  static constexpr size_t kBlock = 512;

  void Track(const char* p, size_t n) {
    while (n > 0) {
      if (state_ == State::kHeader) {
        size_t take = std::min(n, kBlock - header_.size());
        header_.append(p, take);
        p += take;
        n -= take;
        if (header_.size() == kBlock) {
          StartEntry();
        }
      } else if (state_ == State::kData || state_ == State::kPadding) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(n, remaining_));
        if (state_ == State::kData && collect_pax_ && pax_.size() < (1u << 20)) {
          pax_.append(p, take);
        }
        p += take;
        n -= take;
        remaining_ -= take;
        if (remaining_ == 0) {
          if (state_ == State::kData) {
            FinishData();
          } else {
            state_ = State::kHeader;
          }
        }
      } else {
        return;  // after the end-of-archive marker nothing matters
      }
    }
  }

  void StartEntry() {
    std::string header = std::move(header_);
    header_.clear();
    if (header.find_first_not_of('\0') == std::string::npos) {
      state_ = State::kEnd;
      return;
    }
    uint64_t size = ParseSize(header.substr(124, 12));
    char type = header[156];
    if (next_size_ >= 0 && type != 'x' && type != 'g') {
      size = static_cast<uint64_t>(next_size_);
      next_size_ = -1;
    }
    // Go's reader (and POSIX) give these types no data, whatever the size field says.
    if (type == '1' || type == '2' || type == '3' || type == '4' || type == '5' || type == '6') {
      size = 0;
    }
    collect_pax_ = type == 'x';
    pax_.clear();
    padding_ = (kBlock - size % kBlock) % kBlock;
    remaining_ = size;
    state_ = State::kData;
    if (remaining_ == 0) {
      FinishData();
    }
  }

  void FinishData() {
    if (collect_pax_) {
      // Records are "<len> key=value\n"; only size matters here.
      size_t at = pax_.find(" size=");
      if (at != std::string::npos) {
        next_size_ = std::strtoll(pax_.c_str() + at + 6, nullptr, 10);
      }
      collect_pax_ = false;
    }
    remaining_ = padding_;
    state_ = remaining_ == 0 ? State::kHeader : State::kPadding;
  }

  static uint64_t ParseSize(const std::string& field) {
    if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80) != 0) {
      uint64_t v = 0;  // base-256 (GNU), big-endian after the marker bit
      for (size_t i = 0; i < field.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(field[i]);
        v = (v << 8) | (i == 0 ? (c & 0x7f) : c);
      }
      return v;
    }
    uint64_t v = 0;
    for (char c : field) {
      if (c >= '0' && c <= '7') {
        v = v * 8 + static_cast<uint64_t>(c - '0');
      } else if (c != ' ' && c != '\0') {
        break;
      }
    }
    return v;
  }

  // At the end of the input: true (and the tail to send set) when only padding and the
  // end-of-archive blocks are missing.
  bool CompleteTail() {
    size_t pad = 0;
    if (state_ == State::kHeader && header_.empty()) {
      pad = 0;
    } else if (state_ == State::kPadding) {
      pad = static_cast<size_t>(remaining_);
    } else if (state_ == State::kEnd) {
      pad = 0;  // one zero block seen; a second one is harmless
    } else {
      return false;
    }
    tail_.assign(pad + 2 * kBlock, '\0');
    tail_pos_ = 0;
    return true;
  }

  enum class State { kHeader, kData, kPadding, kEnd };

  ByteSource& inner_;
  State state_ = State::kHeader;
  std::string header_;
  uint64_t remaining_ = 0;
  uint64_t padding_ = 0;
  bool collect_pax_ = false;
  std::string pax_;
  int64_t next_size_ = -1;
  std::string tail_;
  size_t tail_pos_ = 0;
};

la_ssize_t ReadCallback(struct archive* a, void* data, const void** out) {
  auto* ctx = static_cast<ReadContext*>(data);
  absl::StatusOr<size_t> n = ctx->source->Read(ctx->buf.get(), kReadChunk);
  if (!n.ok()) {
    ctx->status = n.status();
    archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
    return -1;
  }
  ctx->total += static_cast<int64_t>(*n);
  if (ctx->limit > 0 && ctx->total > ctx->limit) {
    ctx->status = absl::ResourceExhaustedError(
        absl::StrCat("layer exceeds the uncompressed size limit of ", ctx->limit, " bytes"));
    archive_set_error(a, EFBIG, "size limit");
    return -1;
  }
  *out = ctx->buf.get();
  return static_cast<la_ssize_t>(*n);
}

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

}  // namespace

bool KeepLayerXattr(absl::string_view name) {
  // Overlay's own xattrs only come from whiteouts we translate; a layer may not set them.
  if (absl::StartsWith(name, "trusted.overlay.") || absl::StartsWith(name, "user.overlay.")) {
    return false;
  }
  return absl::StartsWith(name, "user.") || absl::StartsWith(name, "trusted.") ||
         name == "security.capability" || name == "system.posix_acl_access" ||
         name == "system.posix_acl_default";
}

namespace {

std::string ProcFdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

absl::Status WriteAll(int fd, const char* data, size_t size, int64_t offset) {
  while (size > 0) {
    ssize_t n = pwrite(fd, data, size, offset);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus(errno, "write");
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return absl::OkStatus();
}

struct DirTimes {
  std::vector<std::string> path;
  struct timespec times[2];
};

class Extractor {
 public:
  Extractor(int root_fd, const ApplyOptions& options) : root_(root_fd), options_(options) {}

  absl::StatusOr<ApplyStats> Run(ByteSource& tar);

 private:
  absl::Status Entry(struct archive_entry* e, const std::string& name);
  absl::Status Whiteout(const std::vector<std::string>& comps, const std::string& name);
  absl::Status Hardlink(struct archive_entry* e, int parent, const std::string& base,
                        const std::string& name);
  absl::Status RegularFile(struct archive_entry* e, int parent, const std::string& base,
                           const std::string& name);
  absl::Status Directory(struct archive_entry* e, int parent, const std::vector<std::string>& comps,
                         const std::string& name);
  absl::Status Special(struct archive_entry* e, int parent, const std::string& base,
                       const std::string& name);

  // The directory holding comps[0..count), created (0755, root-owned) where missing. The fd
  // stays owned by the cache (valid until the next InvalidateCache or call).
  absl::StatusOr<int> OpenDir(const std::vector<std::string>& comps, size_t count);
  absl::StatusOr<ScopedFd> MakeDirs(const std::vector<std::string>& comps, size_t count,
                                    int depth);
  // Forgets the cached directory; its fd stays open (callers may hold it) until the next
  // OpenDir replaces it.
  void InvalidateCache() {
    cached_path_.clear();
    cache_valid_ = false;
  }
  // Removes an existing entry at parent/base unless `keep_dir` and it is a directory. Returns
  // whether a directory is kept.
  absl::StatusOr<bool> ClearExisting(int parent, const std::string& base, bool keep_dir);

  absl::Status SetFdMetadata(int fd, struct archive_entry* e, const std::string& name,
                             bool set_times);
  absl::Status SetXattrs(struct archive_entry* e, const std::string& name, int fd,
                         const std::string& path);
  static void EntryTimes(struct archive_entry* e, struct timespec times[2]);
  absl::Status Fail(absl::Status s, const std::string& name) {
    return absl::Status(s.code(), absl::StrCat("layer entry \"", name, "\": ", s.message()));
  }
  absl::Status Refuse(const std::string& name, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("layer entry \"", name, "\" refused: ", why));
  }
  absl::Status ArchiveError(const std::string& where);
  void Record(const std::vector<std::string>& comps) {
    if (options_.whiteouts == WhiteoutMode::kNative) {
      created_.insert(JoinComponents(comps, comps.size()));
    }
  }

  const int root_;
  const ApplyOptions options_;
  struct archive* archive_ = nullptr;
  ReadContext read_;
  ApplyStats stats_;
  std::vector<DirTimes> dir_times_;
  std::unordered_set<std::string> created_;  // native mode: paths this layer made
  bool cache_valid_ = false;
  std::string cached_path_;
  ScopedFd cached_fd_;
};

absl::Status Extractor::ArchiveError(const std::string& where) {
  if (!read_.status.ok()) {
    return read_.status;
  }
  std::string msg = archive_error_string(archive_) != nullptr ? archive_error_string(archive_)
                                                              : "unknown libarchive error";
  if (absl::StrContains(msg, "runcated") || absl::StrContains(msg, "Premature end") ||
      absl::StrContains(msg, "unexpected end")) {
    return absl::DataLossError(absl::StrCat("layer tar is truncated (", where, "): ", msg));
  }
  if (stats_.entries == 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer is not a tar archive: ", msg));
  }
  return absl::InvalidArgumentError(absl::StrCat("reading layer tar (", where, "): ", msg));
}

absl::StatusOr<ApplyStats> Extractor::Run(ByteSource& input) {
  TarEndCompletion tar(input);
  std::unique_ptr<struct archive, ArchiveDeleter> a(archive_read_new());
  if (a == nullptr) {
    return absl::ResourceExhaustedError("archive_read_new failed");
  }
  archive_ = a.get();
  archive_read_support_format_tar(archive_);
  archive_read_support_format_gnutar(archive_);
  archive_read_support_format_empty(archive_);
  read_.source = &tar;
  read_.buf = std::make_unique<char[]>(kReadChunk);
  read_.limit = options_.max_size;
  if (archive_read_open(archive_, &read_, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    return ArchiveError("opening");
  }
  while (true) {
    struct archive_entry* e = nullptr;
    int r = archive_read_next_header(archive_, &e);
    if (r == ARCHIVE_EOF) {
      break;
    }
    if (r < ARCHIVE_WARN) {
      return ArchiveError(stats_.entries == 0 ? "first header"
                                              : absl::StrCat("after ", stats_.entries, " entries"));
    }
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) {
      raw = archive_entry_pathname_utf8(e);
    }
    if (raw == nullptr) {
      return absl::InvalidArgumentError("layer entry without a name");
    }
    std::string name(raw);
    ++stats_.entries;
    absl::Status s = Entry(e, name);
    if (!s.ok()) {
      if (!read_.status.ok()) {
        return read_.status;
      }
      return s;
    }
  }
  // Read what follows the end-of-archive blocks, so the caller's digest covers the whole
  // stream (and a limit or corruption there is still seen).
  while (true) {
    absl::StatusOr<size_t> n = tar.Read(read_.buf.get(), kReadChunk);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      break;
    }
    read_.total += static_cast<int64_t>(*n);
    if (read_.limit > 0 && read_.total > read_.limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "layer exceeds the uncompressed size limit of ", read_.limit, " bytes"));
    }
  }
  InvalidateCache();
  // Directory times last, once nothing more is created inside them.
  for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
    ScopedFd fd;
    ResolveFlags rf;
    rf.follow_last = false;
    if (OpenInRootErrno(root_, it->path, it->path.size(), O_RDONLY | O_DIRECTORY, rf,
                        options_.resolver, &fd) != 0) {
      continue;  // removed or replaced by a later entry
    }
    if (futimens(fd.get(), it->times) != 0) {
      return ErrnoStatus(errno, absl::StrCat("set times of \"",
                                             JoinComponents(it->path, it->path.size()), "\""));
    }
  }
  stats_.tar_bytes = read_.total;
  return stats_;
}

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

absl::StatusOr<ScopedFd> Extractor::MakeDirs(const std::vector<std::string>& comps, size_t count,
                                             int depth) {
  if (depth > kMaxParentLinks) {
    return absl::InvalidArgumentError("too many levels of symbolic links in a parent path");
  }
  ScopedFd prev;
  for (size_t i = 0; i <= count; ++i) {
    ScopedFd fd;
    int err = OpenInRootErrno(root_, comps, i, O_PATH | O_DIRECTORY, ResolveFlags{},
                              options_.resolver, &fd);
    if (err == 0) {
      prev = std::move(fd);
      continue;
    }
    if (err != ENOENT || i == 0) {
      return ErrnoStatus(err, absl::StrCat("open \"", JoinComponents(comps, i), "\""));
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
      return ErrnoStatus(errno, absl::StrCat("mkdir \"", JoinComponents(comps, i), "\""));
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
  ScopedFd fd;
  int err = OpenInRootErrno(root_, comps, count, O_PATH | O_DIRECTORY, ResolveFlags{},
                            options_.resolver, &fd);
  if (err == ENOENT) {
    absl::StatusOr<ScopedFd> made = MakeDirs(comps, count, 0);
    if (!made.ok()) {
      return made.status();
    }
    fd = std::move(*made);
  } else if (err != 0) {
    return ErrnoStatus(err, absl::StrCat("open \"", key, "\" inside the root"));
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
    return ErrnoStatus(errno, "stat");
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
      return ErrnoStatus(errno, absl::StrCat("setxattr ", key));
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
      return ErrnoStatus(errno, "chown");
    }
  }
  if (fchmod(fd, archive_entry_perm(e) & 07777) != 0) {
    return ErrnoStatus(errno, "chmod");
  }
  absl::Status s = SetXattrs(e, name, fd, std::string());
  if (!s.ok()) {
    return s;
  }
  if (set_times) {
    struct timespec times[2];
    EntryTimes(e, times);
    if (futimens(fd, times) != 0) {
      return ErrnoStatus(errno, "set times");
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
      ScopedFd real(openat(*dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!real.valid()) {
        return Fail(ErrnoStatus(errno, "open directory"), name);
      }
      if (fsetxattr(real.get(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
        return Fail(ErrnoStatus(errno, "setxattr trusted.overlay.opaque"), name);
      }
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<std::string>> children = ListDir(*dir);
    if (!children.ok()) {
      return Fail(children.status(), name);
    }
    const std::string prefix = dir_count == 0 ? "" : JoinComponents(comps, dir_count) + "/";
    int dir_fd = *dir;
    ScopedFd keep(openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!keep.valid()) {
      return Fail(ErrnoStatus(errno, "open directory"), name);
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
  ScopedFd keep(openat(parent_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!keep.valid()) {
    return Fail(ErrnoStatus(errno, "open directory"), name);
  }
  InvalidateCache();
  absl::Status s = RemoveAllAt(keep.get(), target);
  if (!s.ok()) {
    return Fail(s, name);
  }
  if (options_.whiteouts == WhiteoutMode::kOverlay) {
    if (mknodat(keep.get(), target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return Fail(ErrnoStatus(errno, "mknod whiteout"), name);
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
  ScopedFd tparent;
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
    return ErrnoStatus(err, absl::StrCat("hardlink target \"",
                                         JoinComponents(target, target.size()), "\""));
  }
  const std::string& tbase = target.back();
  struct stat tst;
  if (fstatat(tparent.get(), tbase.c_str(), &tst, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return Refuse(name, absl::StrCat("hardlink target \"",
                                       JoinComponents(target, target.size()), "\" does not exist"));
    }
    return ErrnoStatus(errno, absl::StrCat("hardlink target \"",
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
    return ErrnoStatus(errno, "link");
  }
  return absl::OkStatus();
}

absl::Status Extractor::RegularFile(struct archive_entry* e, int parent, const std::string& base,
                                    const std::string& name) {
  absl::StatusOr<bool> kept = ClearExisting(parent, base, false);
  if (!kept.ok()) {
    return kept.status();
  }
  ScopedFd fd(openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd.valid()) {
    return ErrnoStatus(errno, "create");
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
      return ErrnoStatus(errno, "truncate");
    }
  }
  return SetFdMetadata(fd.get(), e, name, true);
}

absl::Status Extractor::Directory(struct archive_entry* e, int parent,
                                  const std::vector<std::string>& comps, const std::string& name) {
  ScopedFd fd;
  if (comps.empty()) {
    fd.Reset(openat(root_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  } else {
    const std::string& base = comps.back();
    absl::StatusOr<bool> kept = ClearExisting(parent, base, true);
    if (!kept.ok()) {
      return kept.status();
    }
    if (!*kept && mkdirat(parent, base.c_str(), 0700) != 0) {
      return ErrnoStatus(errno, "mkdir");
    }
    fd.Reset(openat(parent, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd.valid()) {
    return ErrnoStatus(errno, "open directory");
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
      return ErrnoStatus(errno, "symlink");
    }
    InvalidateCache();
  } else if (type == AE_IFIFO) {
    if (mkfifoat(parent, base.c_str(), 0600) != 0) {
      return ErrnoStatus(errno, "mkfifo");
    }
  } else {
    dev_t dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
    if (mknodat(parent, base.c_str(), (type == AE_IFCHR ? S_IFCHR : S_IFBLK) | 0600, dev) != 0) {
      return ErrnoStatus(errno, "mknod");
    }
  }
  // Metadata by name with AT_SYMLINK_NOFOLLOW, never through the node: a symlink is never
  // followed and never chmod'ed.
  if (options_.set_owner) {
    if (fchownat(parent, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                 static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus(errno, "chown");
    }
  }
  if (type != AE_IFLNK) {
    // chmod through an O_PATH handle of the node itself (checked not to be a symlink).
    ScopedFd node(openat(parent, base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!node.valid() || fstat(node.get(), &st) != 0) {
      return ErrnoStatus(errno, "open node");
    }
    if (S_ISLNK(st.st_mode)) {
      return absl::InternalError("node was replaced by a symlink");
    }
    if (fchmodat(AT_FDCWD, ProcFdPath(node.get()).c_str(), archive_entry_perm(e) & 07777, 0) !=
        0) {
      return ErrnoStatus(errno, "chmod");
    }
  }
  absl::Status s = SetXattrs(e, name, -1, absl::StrCat(ProcFdPath(parent), "/", base));
  if (!s.ok()) {
    return s;
  }
  struct timespec times[2];
  EntryTimes(e, times);
  if (utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus(errno, "set times");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ApplyStats> ApplyTar(int root_fd, ByteSource& tar, const ApplyOptions& options) {
  Extractor extractor(root_fd, options);
  return extractor.Run(tar);
}

absl::StatusOr<ApplyStats> ApplyTar(const std::string& root, ByteSource& tar,
                                    const ApplyOptions& options) {
  ScopedFd fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open root ", root));
  }
  return ApplyTar(fd.get(), tar, options);
}

}  // namespace berth::snapshotd::archive
