#include "services/snapshotd/walking_differ.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "lib/archive/compression.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/content/blob_stream.h"
#include "services/snapshotd/diff_applier.h"
#include "services/snapshotd/tree_diff.h"

namespace berth::snapshotd {

namespace {

constexpr char kDefaultMediaType[] = "application/vnd.oci.image.layer.v1.tar+gzip";

// Digests and counts what passes, on to `next`.
class CountingSink : public ByteSink {
 public:
  explicit CountingSink(ByteSink& next) : next_(next), digester_(Digester::Sha256()) {}
  absl::Status Write(absl::string_view data) override {
    digester_->Update(data);
    size_ += static_cast<int64_t>(data.size());
    return next_.Write(data);
  }
  absl::Status Close() override { return next_.Close(); }
  Digest digest() const { return digester_->Sum(); }
  int64_t size() const { return size_; }

 private:
  ByteSink& next_;
  std::unique_ptr<Digester> digester_;
  int64_t size_ = 0;
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

WalkingDiffer::WalkingDiffer(content::Ingester& ingester, WalkingDifferOptions options)
    : ingester_(ingester), options_(std::move(options)) {}

absl::StatusOr<oci::Descriptor> WalkingDiffer::Compare(const Context& ctx,
                                                       const std::vector<mount::Mount>& lower,
                                                       const std::vector<mount::Mount>& upper,
                                                       const diff::CompareOptions& options) {
  const std::string media_type =
      options.media_type.empty() ? std::string(kDefaultMediaType) : options.media_type;
  absl::StatusOr<::berth::archive::Compression> compression =
      ::berth::archive::CompressionOfMediaType(media_type);
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

  content::WriterSink content_sink(w, 0, 0, Digest());
  CountingSink compressed(content_sink);
  absl::StatusOr<std::unique_ptr<ByteSink>> compressor =
      ::berth::archive::NewCompressingSink(compressed, *compression, options_.level);
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

