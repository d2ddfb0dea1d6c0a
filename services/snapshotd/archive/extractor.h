#pragma once

// The extractor behind ApplyTar (apply.h), shared by its two files: apply.cc reads the tar
// stream with libarchive and drives the entries; extractor_entries.cc creates each entry
// (directories, files, links, devices, whiteouts) inside the root. Internal to the archive
// folder.

#include <archive.h>
#include <archive_entry.h>
#include <time.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "services/snapshotd/archive/apply.h"
#include "services/snapshotd/archive/fs.h"
#include "services/snapshotd/archive/tar_completion.h"

namespace berth::snapshotd::archive {

inline constexpr size_t kReadChunk = 1 << 20;
inline constexpr absl::string_view kWhiteoutPrefix = ".wh.";
inline constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
inline constexpr absl::string_view kAufsMetaPrefix = ".wh..wh.";
inline constexpr int kMaxParentLinks = 40;

struct ReadContext {
  ByteSource* source = nullptr;
  std::unique_ptr<char[]> buf;
  absl::Status status;
  int64_t total = 0;
  int64_t limit = 0;
};

struct DirTimes {
  std::vector<std::string> path;
  struct timespec times[2];
};

class Extractor {
 public:
  Extractor(int root_fd, const ApplyOptions& options) : root_(root_fd), options_(options) {}

  absl::StatusOr<ApplyStats> Run(ByteSource& tar);

  // The parts below are the steps of Run: apply.cc reads the tar, extractor_entries.cc makes
  // each entry.

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
  absl::StatusOr<UniqueFd> MakeDirs(const std::vector<std::string>& comps, size_t count,
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
  TarEndCompletion* tar_ = nullptr;  // during Run
  const ApplyOptions options_;
  struct archive* archive_ = nullptr;
  ReadContext read_;
  ApplyStats stats_;
  std::vector<DirTimes> dir_times_;
  std::unordered_set<std::string> created_;  // native mode: paths this layer made
  bool cache_valid_ = false;
  std::string cached_path_;
  UniqueFd cached_fd_;
};

}  // namespace berth::snapshotd::archive
