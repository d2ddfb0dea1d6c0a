#include "services/snapshotd/parallel_unpacker.h"

#include <algorithm>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/archive/compression.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "services/snapshotd/diff_applier.h"

namespace berth::snapshotd {
namespace {

constexpr char kDefaultTarMediaType[] = "application/vnd.oci.image.layer.v1.tar";

// What is known of a layer that was not applied by this call.
oci::Descriptor ReusedDescriptor(const oci::Descriptor& layer, const snapshots::Info& info) {
  oci::Descriptor out;
  out.media_type = ::berth::archive::UncompressedMediaType(layer.media_type);
  if (out.media_type.empty()) {
    out.media_type = kDefaultTarMediaType;
  }
  std::string digest;
  if (auto it = info.labels.find(kUncompressedLabel); it != info.labels.end()) {
    digest = it->second;
  } else if (auto a = layer.annotations.find(kUncompressedLabel); a != layer.annotations.end()) {
    digest = a->second;
  }
  if (absl::StatusOr<Digest> parsed = Digest::Parse(digest); parsed.ok()) {
    out.digest = *std::move(parsed);
  }
  return out;
}

// Per layer to apply: its temporary key, what happened, and what it became.
struct Layer {
  std::string key;
  bool prepared = false;   // `key` exists (until it commits or is removed)
  bool committed = false;  // chain[i] was committed by this call
  absl::Status status;
  oci::Descriptor applied;
};

}  // namespace

// One Unpack call: the steps, and what it made so far (for Discard).
class ParallelUnpacker::Run {
 public:
  Run(ParallelUnpacker& unpacker, const Context& ctx, const std::vector<oci::Descriptor>& layers,
      const std::vector<std::string>& chain, const snapshots::Labels& labels,
      const snapshots::UnpackProgressFn& progress)
      : snapshotter_(unpacker.snapshotter_),
        applier_(unpacker.applier_),
        options_(unpacker.options_),
        ctx_(ctx),
        cleanup_ctx_(ctx.Detached()),
        layers_(layers),
        chain_(chain),
        labels_(labels),
        progress_(progress),
        n_(layers.size()),
        applied_(layers.size()),
        todo_(layers.size()) {
    const std::string prefix =
        absl::StrCat("unpack-", absl::ToUnixNanos(absl::Now()), "-", ++unpacker.counter_, "-");
    for (size_t i = 0; i < n_; ++i) {
      todo_[i].key = absl::StrCat(prefix, i);
    }
  }

  absl::StatusOr<std::vector<oci::Descriptor>> Unpack() {
    BERTH_RETURN_IF_ERROR(Validate());
    BERTH_RETURN_IF_ERROR(ReuseExistingPrefix());
    if (first_ == n_) {
      return applied_;
    }
    absl::Status status =
        snapshotter_.SupportsDetached() ? ApplyAllThenCommit() : ApplyAndCommitInOrder();
    if (!status.ok()) {
      Discard();
      return status;
    }
    return applied_;
  }

 private:
  static snapshots::Labels TemporaryLabels() { return {{kUnpackTemporaryLabel, "true"}}; }

  std::string ParentOf(size_t i) const { return i == 0 ? std::string() : chain_[i - 1]; }

  absl::Status Validate() const {
    if (layers_.empty()) {
      return absl::InvalidArgumentError("unpack: no layers");
    }
    if (layers_.size() != chain_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("unpack: ", layers_.size(),
                                                     " layers but ", chain_.size(),
                                                     " chain names"));
    }
    std::set<std::string> seen;
    for (const std::string& name : chain_) {
      if (name.empty()) {
        return absl::InvalidArgumentError("unpack: a chain name is empty");
      }
      if (!seen.insert(name).second) {
        return absl::InvalidArgumentError(absl::StrCat("unpack: chain name ", name, " repeats"));
      }
    }
    return absl::OkStatus();
  }

  // Checks that an existing chain[i] is what this chain would have made.
  absl::Status CheckExisting(size_t i, const snapshots::Info& info) const {
    if (info.kind != snapshots::Kind::kCommitted) {
      return absl::FailedPreconditionError(
          absl::StrCat("unpack: snapshot ", chain_[i], " exists and is not committed"));
    }
    if (info.parent != ParentOf(i)) {
      return absl::FailedPreconditionError(
          absl::StrCat("unpack: snapshot ", chain_[i], " exists on parent \"", info.parent,
                       "\", not \"", ParentOf(i), "\""));
    }
    return absl::OkStatus();
  }

  void Report(size_t i, snapshots::UnpackProgress::State state) {
    if (!progress_) {
      return;
    }
    snapshots::UnpackProgress p;
    p.layer = i;
    p.state = state;
    p.applied = applied_[i];
    progress_(p);
  }

  // The prefix of the chain that exists already is reused; first_ is the first layer to make.
  absl::Status ReuseExistingPrefix() {
    for (first_ = 0; first_ < n_; ++first_) {
      absl::StatusOr<snapshots::Info> info = snapshotter_.Stat(ctx_, chain_[first_]);
      if (absl::IsNotFound(info.status())) {
        break;
      }
      BERTH_RETURN_IF_ERROR(info.status());
      BERTH_RETURN_IF_ERROR(CheckExisting(first_, *info));
      applied_[first_] = ReusedDescriptor(layers_[first_], *info);
      Report(first_, snapshots::UnpackProgress::State::kReused);
    }
    return absl::OkStatus();
  }

  // Applies layer i onto the snapshot just prepared (or returns why it was not).
  absl::Status Apply(size_t i, absl::StatusOr<std::vector<mount::Mount>> mounts) {
    BERTH_RETURN_IF_ERROR(mounts.status());
    todo_[i].prepared = true;
    BERTH_RETURN_IF_ERROR(ctx_.Alive());
    BERTH_ASSIGN_OR_RETURN(todo_[i].applied, applier_.Apply(ctx_, layers_[i], *mounts));
    return absl::OkStatus();
  }

  // Commits todo_[i] as chain[i]. A chain[i] committed meanwhile by someone else, on the same
  // parent, is reused (and todo_[i] removed).
  absl::Status Commit(size_t i) {
    BERTH_RETURN_IF_ERROR(ctx_.Alive());
    Layer& layer = todo_[i];
    snapshots::Labels committed_labels = labels_;
    committed_labels[kUncompressedLabel] = layer.applied.digest.ToString();
    absl::Status st =
        snapshotter_.SupportsDetached()
            ? snapshotter_.CommitWithParent(ctx_, chain_[i], layer.key, ParentOf(i),
                                            committed_labels)
            : snapshotter_.Commit(ctx_, chain_[i], layer.key, committed_labels);
    if (st.ok()) {
      layer.prepared = false;
      layer.committed = true;
    } else if (absl::IsAlreadyExists(st)) {
      absl::StatusOr<snapshots::Info> info = snapshotter_.Stat(ctx_, chain_[i]);
      if (!info.ok()) {
        return st;
      }
      BERTH_RETURN_IF_ERROR(CheckExisting(i, *info));
      BERTH_RETURN_IF_ERROR(snapshotter_.Remove(cleanup_ctx_, layer.key));
      layer.prepared = false;
    } else {
      return st;
    }
    applied_[i] = layer.applied;
    Report(i, snapshots::UnpackProgress::State::kApplied);
    return absl::OkStatus();
  }

  // Native: each layer needs its parent's copy, so one after the other.
  absl::Status ApplyAndCommitInOrder() {
    for (size_t i = first_; i < n_; ++i) {
      BERTH_RETURN_IF_ERROR(
          Apply(i, snapshotter_.Prepare(ctx_, todo_[i].key, ParentOf(i), TemporaryLabels())));
      BERTH_RETURN_IF_ERROR(Commit(i));
    }
    return absl::OkStatus();
  }

  // Overlay: every layer at once into a detached snapshot, then commit bottom up.
  absl::Status ApplyAllThenCommit() {
    std::atomic<size_t> next{first_};
    std::atomic<bool> failed{false};
    auto work = [&]() {
      for (size_t i = next++; i < n_ && !failed.load(); i = next++) {
        todo_[i].status =
            Apply(i, snapshotter_.PrepareDetached(ctx_, todo_[i].key, TemporaryLabels()));
        if (!todo_[i].status.ok()) {
          failed = true;
        }
      }
    };
    size_t threads = options_.max_parallel > 0 ? static_cast<size_t>(options_.max_parallel)
                                               : std::thread::hardware_concurrency();
    threads = std::max<size_t>(1, std::min(threads, n_ - first_));
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (size_t t = 1; t < threads; ++t) {
      pool.emplace_back(work);
    }
    work();
    for (std::thread& t : pool) {
      t.join();
    }
    // The error of the lowest failed layer, if any.
    for (size_t i = first_; i < n_; ++i) {
      BERTH_RETURN_IF_ERROR(todo_[i].status);
    }
    for (size_t i = first_; i < n_; ++i) {
      BERTH_RETURN_IF_ERROR(Commit(i));
    }
    return absl::OkStatus();
  }

  // Removes what this call made, top first (a committed layer's children go before it). Runs
  // detached from the caller's cancellation: a caller that left still gets its mess removed.
  void Discard() {
    for (size_t i = n_; i-- > first_;) {
      const std::string* what = todo_[i].committed  ? &chain_[i]
                                : todo_[i].prepared ? &todo_[i].key
                                                    : nullptr;
      if (what == nullptr) {
        continue;
      }
      if (absl::Status st = snapshotter_.Remove(cleanup_ctx_, *what); !st.ok()) {
        BERTH_LOG(Warn) << "snapshotd: unpack: removing " << *what << ": " << st;
      }
    }
  }

  LocalSnapshotter& snapshotter_;
  diff::Applier& applier_;
  const ParallelUnpackerOptions& options_;
  const Context& ctx_;
  const Context cleanup_ctx_;
  const std::vector<oci::Descriptor>& layers_;
  const std::vector<std::string>& chain_;
  const snapshots::Labels& labels_;
  const snapshots::UnpackProgressFn& progress_;
  const size_t n_;
  size_t first_ = 0;
  std::vector<oci::Descriptor> applied_;
  std::vector<Layer> todo_;
};

ParallelUnpacker::ParallelUnpacker(LocalSnapshotter& snapshotter, diff::Applier& applier,
                                   ParallelUnpackerOptions options)
    : snapshotter_(snapshotter), applier_(applier), options_(options) {}

absl::StatusOr<std::vector<oci::Descriptor>> ParallelUnpacker::Unpack(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const snapshots::Labels& labels,
    const snapshots::UnpackProgressFn& progress) {
  return Run(*this, ctx, layers, chain, labels, progress).Unpack();
}

absl::StatusOr<int> ParallelUnpacker::RemoveLeftovers() {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> namespaces, snapshotter_.Namespaces());
  int removed = 0;
  for (const std::string& ns : namespaces) {
    Context ctx;
    ctx.ns = ns;
    std::vector<std::string> leftovers;
    BERTH_RETURN_IF_ERROR(snapshotter_.Walk(
        ctx, {absl::StrCat("kind==active,labels.\"", kUnpackTemporaryLabel, "\"==true")},
        [&](const snapshots::Info& info) {
          leftovers.push_back(info.name);
          return absl::OkStatus();
        }));
    for (const std::string& key : leftovers) {
      BERTH_LOG(Info) << "snapshotd: removing " << key << " in " << ns
                      << ", left by an unpack that did not finish";
      BERTH_RETURN_IF_ERROR(snapshotter_.Remove(ctx, key));
      ++removed;
    }
  }
  return removed;
}

}  // namespace berth::snapshotd
