#include "services/snapshotd/diff_applier.h"

#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/archive/compression.h"
#include "lib/base/logging.h"
#include "lib/content/blob_stream.h"

namespace berth::snapshotd {

namespace {

constexpr size_t kChunk = 1 << 20;
constexpr size_t kPrefetchDepth = 8;
constexpr char kDefaultTarMediaType[] = "application/vnd.oci.image.layer.v1.tar";

// Reads `inner` ahead in a thread of its own (decompression overlaps extraction). `inner` is
// only touched by that thread until Stop() returns.
class PrefetchSource : public ByteSource {
 public:
  explicit PrefetchSource(ByteSource& inner) : inner_(inner) {
    for (size_t i = 0; i < kPrefetchDepth; ++i) {
      free_.push_back(std::make_unique<char[]>(kChunk));
    }
    thread_ = std::thread([this] { Produce(); });
  }
  ~PrefetchSource() override { Stop(); }

  // Stops the reader thread and waits for it.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      cancel_ = true;
    }
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    if (current_ == nullptr || current_pos_ == current_len_) {
      absl::MutexLock lock(&mu_);
      if (current_ != nullptr) {
        free_.push_back(std::move(current_));
      }
      mu_.Await(absl::Condition(
          +[](PrefetchSource* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->ready_.empty() || self->done_;
          },
          this));
      if (ready_.empty()) {
        if (!error_.ok()) {
          return error_;
        }
        return 0;
      }
      current_ = std::move(ready_.front().first);
      current_len_ = ready_.front().second;
      current_pos_ = 0;
      ready_.pop_front();
    }
    size_t n = std::min(size, current_len_ - current_pos_);
    memcpy(buf, current_.get() + current_pos_, n);
    current_pos_ += n;
    return n;
  }

 private:
  void Produce() {
    while (true) {
      std::unique_ptr<char[]> buf;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](PrefetchSource* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return !self->free_.empty() || self->cancel_;
            },
            this));
        if (cancel_) {
          done_ = true;
          return;
        }
        buf = std::move(free_.back());
        free_.pop_back();
      }
      absl::StatusOr<size_t> n = inner_.Read(buf.get(), kChunk);
      absl::MutexLock lock(&mu_);
      if (!n.ok()) {
        error_ = n.status();
        done_ = true;
        return;
      }
      if (*n == 0) {
        done_ = true;
        return;
      }
      ready_.emplace_back(std::move(buf), *n);
    }
  }

  ByteSource& inner_;
  std::thread thread_;
  std::unique_ptr<char[]> current_;  // consumer side only
  size_t current_len_ = 0;
  size_t current_pos_ = 0;
  absl::Mutex mu_;
  std::deque<std::pair<std::unique_ptr<char[]>, size_t>> ready_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<char[]>> free_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

LayerApplier::LayerApplier(content::Provider& provider, LayerApplierOptions options)
    : provider_(provider), options_(options) {}

absl::StatusOr<oci::Descriptor> LayerApplier::Apply(const Context& ctx,
                                                    const oci::Descriptor& desc,
                                                    const std::vector<mount::Mount>& mounts) {
  absl::StatusOr<::berth::archive::Compression> declared =
      ::berth::archive::CompressionOfMediaType(desc.media_type);
  if (!declared.ok()) {
    return declared.status();
  }
  std::optional<std::string> dir = mount::WritableDir(mounts);
  if (!dir.has_value()) {
    return absl::InvalidArgumentError(
        "apply: the mounts have no writable directory (want one read-write bind mount or one "
        "overlay with an upperdir)");
  }
  Digest expected;
  auto label = desc.annotations.find(kUncompressedLabel);
  if (label != desc.annotations.end()) {
    absl::StatusOr<Digest> parsed = Digest::Parse(label->second);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("annotation ", kUncompressedLabel, ": ",
                                                     parsed.status().message()));
    }
    expected = *parsed;
  }

  // The blob stops the apply within a chunk once the caller is gone (ctx.Alive()).
  absl::StatusOr<std::unique_ptr<content::BlobSource>> blob =
      content::BlobSource::Open(provider_, ctx, desc.digest, desc.size);
  if (!blob.ok()) {
    return absl::Status(blob.status().code(), absl::StrCat("layer ", desc.digest.ToString(), ": ",
                                                           blob.status().message()));
  }
  absl::StatusOr<std::unique_ptr<::berth::archive::DecompressingSource>> tar =
      ::berth::archive::DecompressingSource::Create(**blob);
  if (!tar.ok()) {
    return tar.status();
  }
  if ((*tar)->compression() != *declared) {
    BERTH_LOG(Debug) << "layer " << desc.digest.ToString() << ": media type " << desc.media_type
                     << " but the data is "
                     << ::berth::archive::CompressionName((*tar)->compression());
  }

  archive::ApplyOptions options;
  switch (options_.whiteouts) {
    case LayerApplierOptions::Whiteouts::kAuto:
      options.whiteouts = mounts.size() == 1 && mounts[0].type == "overlay"
                              ? archive::WhiteoutMode::kOverlay
                              : archive::WhiteoutMode::kNative;
      break;
    case LayerApplierOptions::Whiteouts::kOverlay:
      options.whiteouts = archive::WhiteoutMode::kOverlay;
      break;
    case LayerApplierOptions::Whiteouts::kNative:
      options.whiteouts = archive::WhiteoutMode::kNative;
      break;
  }
  options.allow_devices = options_.allow_devices;
  options.max_size = options_.max_uncompressed_size;
  options.resolver = options_.resolver;

  absl::StatusOr<archive::ApplyStats> stats;
  if (options_.pipeline) {
    PrefetchSource prefetch(**tar);
    stats = archive::ApplyTar(*dir, prefetch, options);
    prefetch.Stop();
  } else {
    stats = archive::ApplyTar(*dir, **tar, options);
  }
  if (!stats.ok()) {
    return absl::Status(stats.status().code(),
                        absl::StrCat("apply layer ", desc.digest.ToString(), ": ",
                                     stats.status().message()));
  }
  oci::Descriptor out;
  out.media_type = ::berth::archive::UncompressedMediaType(desc.media_type);
  if (out.media_type.empty()) {
    out.media_type = kDefaultTarMediaType;
  }
  out.digest = (*tar)->UncompressedDigest();
  out.size = (*tar)->uncompressed_size();
  if (!expected.IsEmpty() && expected != out.digest) {
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", desc.digest.ToString(), ": uncompressed digest ",
                     out.digest.ToString(), " does not match ", kUncompressedLabel, " ",
                     expected.ToString()));
  }
  BERTH_LOG(Debug) << "applied layer " << desc.digest.ToString() << " ("
                   << ::berth::archive::CompressionName((*tar)->compression()) << ", "
                   << stats->entries << " entries, " << out.size << " bytes) into " << *dir;
  return out;
}

}  // namespace berth::snapshotd
