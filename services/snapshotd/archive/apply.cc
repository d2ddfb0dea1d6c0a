#include "services/snapshotd/archive/apply.h"

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
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "services/snapshotd/archive/extractor.h"

namespace berth::snapshotd::archive {

namespace {

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

absl::Status Extractor::ArchiveError(const std::string& where) {
  if (!read_.status.ok()) {
    return read_.status;
  }
  std::string msg = archive_error_string(archive_) != nullptr ? archive_error_string(archive_)
                                                              : "unknown libarchive error";
  // The stream ended inside a header or an entry's data: whatever libarchive calls it, the
  // layer is truncated.
  if (tar_ != nullptr && tar_->cut()) {
    return absl::DataLossError(absl::StrCat("layer tar is truncated (", where, "): ", msg));
  }
  if (stats_.entries == 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer is not a tar archive: ", msg));
  }
  return absl::InvalidArgumentError(absl::StrCat("reading layer tar (", where, "): ", msg));
}

absl::StatusOr<ApplyStats> Extractor::Run(ByteSource& input) {
  TarEndCompletion tar(input);
  tar_ = &tar;
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
    UniqueFd fd;
    ResolveFlags rf;
    rf.follow_last = false;
    if (OpenInRootErrno(root_, it->path, it->path.size(), O_RDONLY | O_DIRECTORY, rf,
                        options_.resolver, &fd) != 0) {
      continue;  // removed or replaced by a later entry
    }
    if (futimens(fd.get(), it->times) != 0) {
      return PathErrnoStatus(errno, absl::StrCat("set times of \"",
                                             JoinComponents(it->path, it->path.size()), "\""));
    }
  }
  stats_.tar_bytes = read_.total;
  return stats_;
}

absl::StatusOr<ApplyStats> ApplyTar(int root_fd, ByteSource& tar, const ApplyOptions& options) {
  Extractor extractor(root_fd, options);
  return extractor.Run(tar);
}

absl::StatusOr<ApplyStats> ApplyTar(const std::string& root, ByteSource& tar,
                                    const ApplyOptions& options) {
  UniqueFd fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return PathErrnoStatus(errno, absl::StrCat("open root ", root));
  }
  return ApplyTar(fd.get(), tar, options);
}

}  // namespace berth::snapshotd::archive

