#include "services/snapshotd/parallel_unpacker.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
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
  bool ready = false;      // announced: its blob is in the store
  bool started = false;    // a worker took it
  bool applied = false;    // applied into `key`, waiting for its commit
  bool prepared = false;   // `key` exists (until it commits or is removed)
  bool committed = false;  // chain[i] was committed by this call
  absl::Status status;
  oci::Descriptor applied_desc;
  std::vector<mount::Mount> mounts;  // detached: made by Begin for every layer at once
};

// For the crash tests only (integration/snapshotd_crash_test.cc): snapshotd dies at `point`
// when BERTH_SNAPSHOTD_CRASH_POINT names it.
void MaybeCrash(absl::string_view point) {
  if (const char* want = ::getenv("BERTH_SNAPSHOTD_CRASH_POINT");
      want != nullptr && absl::string_view(want) == point) {
    ::_exit(137);
  }
}

}  // namespace

// One unpack: the steps, the workers, and what it made so far (for Discard). Everything the
// workers share is under mu_; the snapshotter calls are made outside it.
class ParallelUnpacker::Session : public snapshots::UnpackSession {
 public:
  Session(ParallelUnpacker& unpacker, const Context& ctx,
          const std::vector<oci::Descriptor>& layers, const std::vector<std::string>& chain,
          const snapshots::Labels& labels, const snapshots::UnpackProgressFn& progress)
      : snapshotter_(unpacker.snapshotter_),
        applier_(unpacker.applier_),
        options_(unpacker.options_),
        detached_(snapshotter_.SupportsDetached()),
        stop_(std::make_shared<Cancellation>([parent = ctx.cancellation] {
          return parent != nullptr && parent->IsCancelled();
        })),
        ctx_(WithStop(ctx, stop_)),
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

  ~Session() override {
    if (!finished_) {
      Stop(/*cancel=*/true);
      Discard();
    }
  }

  // Checks the input, reuses the existing prefix and starts the workers.
  absl::Status Begin() {
    BERTH_RETURN_IF_ERROR(Validate());
    BERTH_RETURN_IF_ERROR(ReuseExistingPrefix());
    next_commit_ = first_;
    if (detached_ && first_ < n_) {
      BERTH_RETURN_IF_ERROR(PrepareAll());
    }
    size_t threads = options_.max_parallel > 0 ? static_cast<size_t>(options_.max_parallel)
                                               : std::thread::hardware_concurrency();
    threads = detached_ ? std::max<size_t>(1, std::min(threads, n_ - first_)) : 1;
    if (first_ == n_) {
      threads = 0;
    }
    for (size_t t = 0; t < threads; ++t) {
      pool_.emplace_back([this] { Work(); });
    }
    return absl::OkStatus();
  }

  size_t reused() const override { return first_; }

  absl::Status Ready(size_t i) override {
    if (i >= n_) {
      return absl::InvalidArgumentError(
          absl::StrCat("unpack: layer ", i, " announced, but the chain has ", n_));
    }
    absl::MutexLock lock(&mu_);
    if (failed_) {
      return LowestErrorLocked();
    }
    todo_[i].ready = true;
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<oci::Descriptor>> Finish() override {
    absl::Status status = WaitForAll();
    // After a layer failed, applies still running finish (with their own errors, not ours):
    // the lowest failing layer's error is the one returned. A session finished before every
    // layer came is an abort: those stop at once.
    Stop(/*cancel=*/!status.ok());
    if (status.ok()) {
      absl::MutexLock lock(&mu_);
      status = LowestErrorLocked();
    }
    finished_ = true;
    if (!status.ok()) {
      Discard();
      return status;
    }
    return applied_;
  }

 private:
  static snapshots::Labels TemporaryLabels() { return {{kUnpackTemporaryLabel, "true"}}; }
  static Context WithStop(Context ctx, std::shared_ptr<Cancellation> stop) {
    ctx.cancellation = std::move(stop);
    return ctx;
  }

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

  void Report(size_t i, snapshots::UnpackProgress::State state, const oci::Descriptor& applied) {
    if (!progress_) {
      return;
    }
    snapshots::UnpackProgress p;
    p.layer = i;
    p.state = state;
    p.applied = applied;
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
      Report(first_, snapshots::UnpackProgress::State::kReused, applied_[first_]);
    }
    return absl::OkStatus();
  }

  // Detached: every layer's snapshot made at once (one transaction, one fsync) rather than one
  // Prepare per layer as it arrives.
  absl::Status PrepareAll() {
    std::vector<std::string> keys;
    for (size_t i = first_; i < n_; ++i) {
      keys.push_back(todo_[i].key);
    }
    BERTH_ASSIGN_OR_RETURN(std::vector<std::vector<mount::Mount>> mounts,
                           snapshotter_.PrepareDetachedAll(ctx_, keys, TemporaryLabels()));
    absl::MutexLock lock(&mu_);
    for (size_t i = first_; i < n_; ++i) {
      todo_[i].mounts = std::move(mounts[i - first_]);
      todo_[i].prepared = true;
    }
    MaybeCrash("unpack-prepared");
    return absl::OkStatus();
  }

  // Whether a worker may take layer i now: announced, not taken, and (native: a copy of its
  // parent) everything below it committed.
  bool StartableLocked(size_t i) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return todo_[i].ready && !todo_[i].started && (detached_ || i == next_commit_);
  }

  // The lowest layer a worker may take now; n_ when there is none.
  size_t NextLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = first_; i < n_; ++i) {
      if (StartableLocked(i)) {
        return i;
      }
    }
    return n_;
  }

  bool AllTakenLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = first_; i < n_; ++i) {
      if (!todo_[i].started) {
        return false;
      }
    }
    return true;
  }

  // A worker: takes announced layers, lowest first, applies each into its own snapshot and
  // commits what it can, until every layer is taken, one failed, or the session stops.
  void Work() {
    for (;;) {
      size_t i;
      {
        absl::MutexLock lock(&mu_);
        auto can_go = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return failed_ || stopped_ || AllTakenLocked() || NextLocked() < n_;
        };
        mu_.Await(absl::Condition(&can_go));
        if (failed_ || stopped_ || AllTakenLocked()) {
          return;
        }
        i = NextLocked();
        todo_[i].started = true;
      }
      Report(i, snapshots::UnpackProgress::State::kStarted, {});
      absl::Status status =
          Apply(i, detached_ ? absl::StatusOr<std::vector<mount::Mount>>(todo_[i].mounts)
                             : snapshotter_.Prepare(ctx_, todo_[i].key, ParentOf(i),
                                                    TemporaryLabels()));
      {
        absl::MutexLock lock(&mu_);
        todo_[i].status = status;
        todo_[i].applied = status.ok();
        failed_ = failed_ || !status.ok();
      }
      CommitWhatCan();
    }
  }

  // Applies layer i onto the snapshot just prepared (or returns why it was not).
  absl::Status Apply(size_t i, absl::StatusOr<std::vector<mount::Mount>> mounts) {
    BERTH_RETURN_IF_ERROR(mounts.status());
    {
      absl::MutexLock lock(&mu_);
      todo_[i].prepared = true;
    }
    BERTH_RETURN_IF_ERROR(ctx_.Alive());
    BERTH_ASSIGN_OR_RETURN(oci::Descriptor desc, applier_.Apply(ctx_, layers_[i], *mounts));
    absl::MutexLock lock(&mu_);
    todo_[i].applied_desc = std::move(desc);
    return absl::OkStatus();
  }

  // Commits, in chain order, every applied layer whose layers below are all committed: the
  // applied run above the last commit goes in one transaction (CommitRun). One thread commits
  // at a time (committing_); a layer applied while it commits is seen by its loop, which
  // re-checks under mu_ before it lets go.
  void CommitWhatCan() {
    absl::MutexLock lock(&mu_);
    if (committing_) {
      return;
    }
    committing_ = true;
    while (!failed_ && next_commit_ < n_ && todo_[next_commit_].applied) {
      size_t begin = next_commit_;
      size_t end = begin;
      while (end < n_ && todo_[end].applied) {
        ++end;
      }
      mu_.Unlock();
      absl::Status status = CommitRun(begin, end);
      mu_.Lock();
      if (!status.ok()) {
        failed_ = true;
        break;
      }
      next_commit_ = end;
    }
    committing_ = false;
  }

  // Commits layers [begin, end): detached, in one transaction (CommitChain); when that fails
  // (a name committed meanwhile by another unpack, say) one by one, as Commit handles it.
  absl::Status CommitRun(size_t begin, size_t end) {
    if (detached_ && end - begin > 1 && ctx_.Alive().ok()) {
      std::vector<LocalSnapshotter::CommitStep> steps;
      for (size_t i = begin; i < end; ++i) {
        steps.push_back({chain_[i], todo_[i].key, ParentOf(i), CommittedLabels(i)});
      }
      if (snapshotter_.CommitChain(ctx_, steps).ok()) {
        for (size_t i = begin; i < end; ++i) {
          Committed(i);
        }
        MaybeCrash("unpack-committed");
        return absl::OkStatus();
      }
    }
    for (size_t i = begin; i < end; ++i) {
      if (absl::Status st = Commit(i); !st.ok()) {
        absl::MutexLock lock(&mu_);
        todo_[i].status = st;
        return st;
      }
      MaybeCrash("unpack-committed");
    }
    return absl::OkStatus();
  }

  snapshots::Labels CommittedLabels(size_t i) {
    absl::MutexLock lock(&mu_);
    snapshots::Labels committed_labels = labels_;
    committed_labels[kUncompressedLabel] = todo_[i].applied_desc.digest.ToString();
    committed_labels[kSnapshotRefLabel] = chain_[i];
    return committed_labels;
  }

  // Layer i is chain[i] now: noted and reported.
  void Committed(size_t i) {
    {
      absl::MutexLock lock(&mu_);
      todo_[i].prepared = false;
      todo_[i].committed = true;
    }
    applied_[i] = todo_[i].applied_desc;
    Report(i, snapshots::UnpackProgress::State::kApplied, applied_[i]);
  }

  // Commits todo_[i] as chain[i]. A chain[i] committed meanwhile by someone else, on the same
  // parent, is reused (and todo_[i] removed).
  absl::Status Commit(size_t i) {
    BERTH_RETURN_IF_ERROR(ctx_.Alive());
    const std::string& key = todo_[i].key;
    snapshots::Labels committed_labels = CommittedLabels(i);
    absl::Status st =
        detached_
            ? snapshotter_.CommitWithParent(ctx_, chain_[i], key, ParentOf(i), committed_labels)
            : snapshotter_.Commit(ctx_, chain_[i], key, committed_labels);
    if (absl::IsAlreadyExists(st)) {
      absl::StatusOr<snapshots::Info> info = snapshotter_.Stat(ctx_, chain_[i]);
      if (!info.ok()) {
        return st;
      }
      BERTH_RETURN_IF_ERROR(CheckExisting(i, *info));
      BERTH_RETURN_IF_ERROR(snapshotter_.Remove(cleanup_ctx_, key));
      {
        absl::MutexLock lock(&mu_);
        todo_[i].prepared = false;
      }
      applied_[i] = todo_[i].applied_desc;
      Report(i, snapshots::UnpackProgress::State::kApplied, applied_[i]);
      return absl::OkStatus();
    }
    BERTH_RETURN_IF_ERROR(st);
    Committed(i);
    return absl::OkStatus();
  }

  // Waits until every layer is committed or one failed; InvalidArgument when a layer was
  // never announced.
  absl::Status WaitForAll() {
    absl::MutexLock lock(&mu_);
    for (size_t i = first_; i < n_; ++i) {
      if (!todo_[i].ready) {
        return absl::InvalidArgumentError(
            absl::StrCat("unpack: finished before layer ", i, " was announced"));
      }
    }
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return failed_ || (next_commit_ == n_ && !committing_);
    };
    mu_.Await(absl::Condition(&done));
    return absl::OkStatus();
  }

  // The error of the lowest failed layer, if any.
  absl::Status LowestErrorLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = first_; i < n_; ++i) {
      if (!todo_[i].status.ok()) {
        return todo_[i].status;
      }
    }
    return absl::OkStatus();
  }

  // Stops the workers from taking more layers and joins them; with `cancel`, an apply in
  // progress stops too, at its next chunk.
  void Stop(bool cancel) {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    if (cancel) {
      stop_->Cancel();
    }
    for (std::thread& t : pool_) {
      t.join();
    }
    pool_.clear();
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
  const bool detached_;
  const std::shared_ptr<Cancellation> stop_;  // the caller's cancellation, or ours (Stop)
  const Context ctx_;
  const Context cleanup_ctx_;
  const std::vector<oci::Descriptor> layers_;
  const std::vector<std::string> chain_;
  const snapshots::Labels labels_;
  const snapshots::UnpackProgressFn progress_;
  const size_t n_;
  size_t first_ = 0;
  bool finished_ = false;
  std::vector<oci::Descriptor> applied_;  // each written once, before its layer commits
  std::vector<std::thread> pool_;

  absl::Mutex mu_;
  std::vector<Layer> todo_ ABSL_GUARDED_BY(mu_);
  size_t next_commit_ ABSL_GUARDED_BY(mu_) = 0;
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

ParallelUnpacker::ParallelUnpacker(LocalSnapshotter& snapshotter, diff::Applier& applier,
                                   ParallelUnpackerOptions options)
    : snapshotter_(snapshotter), applier_(applier), options_(options) {}

absl::StatusOr<std::vector<oci::Descriptor>> ParallelUnpacker::Unpack(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const snapshots::Labels& labels,
    const snapshots::UnpackProgressFn& progress) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<snapshots::UnpackSession> session,
                         Start(ctx, layers, chain, labels, progress));
  for (size_t i = 0; i < layers.size(); ++i) {
    BERTH_RETURN_IF_ERROR(session->Ready(i));
  }
  return session->Finish();
}

absl::StatusOr<std::unique_ptr<snapshots::UnpackSession>> ParallelUnpacker::Start(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const snapshots::Labels& labels,
    const snapshots::UnpackProgressFn& progress) {
  auto session = std::make_unique<Session>(*this, ctx, layers, chain, labels, progress);
  BERTH_RETURN_IF_ERROR(session->Begin());
  return session;
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
