#include "services/snapshotd/parallel_unpacker.h"

#include <algorithm>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/base/logging.h"
#include "services/snapshotd/archive_stream.h"
#include "services/snapshotd/diff_applier.h"

namespace berth::snapshotd {
namespace {

constexpr char kDefaultTarMediaType[] = "application/vnd.oci.image.layer.v1.tar";

// What is known of a layer that was not applied by this call.
oci::Descriptor ReusedDescriptor(const oci::Descriptor& layer, const snapshots::Info& info) {
  oci::Descriptor out;
  out.media_type = archive::UncompressedMediaType(layer.media_type);
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

ParallelUnpacker::ParallelUnpacker(LocalSnapshotter& snapshotter, diff::Applier& applier,
                                   ParallelUnpackerOptions options)
    : snapshotter_(snapshotter), applier_(applier), options_(options) {}

absl::StatusOr<std::vector<oci::Descriptor>> ParallelUnpacker::Unpack(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const snapshots::Labels& labels) {
  if (layers.empty()) {
    return absl::InvalidArgumentError("unpack: no layers");
  }
  if (layers.size() != chain.size()) {
    return absl::InvalidArgumentError(absl::StrCat("unpack: ", layers.size(), " layers but ",
                                                   chain.size(), " chain names"));
  }
  std::set<std::string> seen;
  for (const std::string& name : chain) {
    if (name.empty()) {
      return absl::InvalidArgumentError("unpack: a chain name is empty");
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("unpack: chain name ", name, " repeats"));
    }
  }
  const size_t n = layers.size();
  auto parent_of = [&](size_t i) { return i == 0 ? std::string() : chain[i - 1]; };
  // Checks that an existing chain[i] is what this chain would have made.
  auto check_existing = [&](size_t i, const snapshots::Info& info) -> absl::Status {
    if (info.kind != snapshots::Kind::kCommitted) {
      return absl::FailedPreconditionError(
          absl::StrCat("unpack: snapshot ", chain[i], " exists and is not committed"));
    }
    if (info.parent != parent_of(i)) {
      return absl::FailedPreconditionError(
          absl::StrCat("unpack: snapshot ", chain[i], " exists on parent \"", info.parent,
                       "\", not \"", parent_of(i), "\""));
    }
    return absl::OkStatus();
  };

  // The prefix of the chain that exists already is reused.
  std::vector<oci::Descriptor> applied(n);
  size_t first = 0;
  for (; first < n; ++first) {
    absl::StatusOr<snapshots::Info> info = snapshotter_.Stat(ctx, chain[first]);
    if (absl::IsNotFound(info.status())) {
      break;
    }
    if (!info.ok()) {
      return info.status();
    }
    if (absl::Status st = check_existing(first, *info); !st.ok()) {
      return st;
    }
    applied[first] = ReusedDescriptor(layers[first], *info);
  }
  if (first == n) {
    return applied;
  }

  std::vector<Layer> todo(n);
  const std::string prefix =
      absl::StrCat("unpack-", absl::ToUnixNanos(absl::Now()), "-", ++counter_, "-");
  for (size_t i = first; i < n; ++i) {
    todo[i].key = absl::StrCat(prefix, i);
  }
  // Removes what this call made, top first (a committed layer's children go before it).
  auto discard = [&]() {
    for (size_t i = n; i-- > first;) {
      const std::string* what = todo[i].committed  ? &chain[i]
                                : todo[i].prepared ? &todo[i].key
                                                   : nullptr;
      if (what == nullptr) {
        continue;
      }
      if (absl::Status st = snapshotter_.Remove(ctx, *what); !st.ok()) {
        BERTH_LOG(Warn) << "snapshotd: unpack: removing " << *what << ": " << st;
      }
    }
  };
  // The error of the lowest failed layer, if any.
  auto first_error = [&]() -> absl::Status {
    for (size_t i = first; i < n; ++i) {
      if (!todo[i].status.ok()) {
        return todo[i].status;
      }
    }
    return absl::OkStatus();
  };
  // Commits todo[i] as chain[i]. A chain[i] committed meanwhile by someone else, on the same
  // parent, is reused (and todo[i] removed).
  auto commit = [&](size_t i) -> absl::Status {
    Layer& layer = todo[i];
    snapshots::Labels committed_labels = labels;
    committed_labels[kUncompressedLabel] = layer.applied.digest.ToString();
    absl::Status st =
        snapshotter_.SupportsDetached()
            ? snapshotter_.CommitWithParent(ctx, chain[i], layer.key, parent_of(i),
                                            committed_labels)
            : snapshotter_.Commit(ctx, chain[i], layer.key, committed_labels);
    if (st.ok()) {
      layer.prepared = false;
      layer.committed = true;
      return st;
    }
    if (!absl::IsAlreadyExists(st)) {
      return st;
    }
    absl::StatusOr<snapshots::Info> info = snapshotter_.Stat(ctx, chain[i]);
    if (!info.ok()) {
      return st;
    }
    if (absl::Status existing = check_existing(i, *info); !existing.ok()) {
      return existing;
    }
    if (absl::Status removed = snapshotter_.Remove(ctx, layer.key); !removed.ok()) {
      return removed;
    }
    layer.prepared = false;
    return absl::OkStatus();
  };

  // Applies layer i onto the snapshot just prepared (or returns why it was not).
  auto apply = [&](size_t i, absl::StatusOr<std::vector<mount::Mount>> mounts) -> absl::Status {
    if (!mounts.ok()) {
      return mounts.status();
    }
    todo[i].prepared = true;
    absl::StatusOr<oci::Descriptor> desc = applier_.Apply(ctx, layers[i], *mounts);
    if (!desc.ok()) {
      return desc.status();
    }
    todo[i].applied = *std::move(desc);
    return absl::OkStatus();
  };

  if (!snapshotter_.SupportsDetached()) {
    // Native: each layer needs its parent's copy, so one after the other.
    for (size_t i = first; i < n; ++i) {
      Layer& layer = todo[i];
      absl::Status st = apply(i, snapshotter_.Prepare(ctx, layer.key, parent_of(i), {}));
      if (st.ok()) {
        st = commit(i);
      }
      if (!st.ok()) {
        discard();
        return st;
      }
      applied[i] = layer.applied;
    }
    return applied;
  }

  // Overlay: every layer at once into a detached snapshot, then commit bottom up.
  std::atomic<size_t> next{first};
  std::atomic<bool> failed{false};
  auto work = [&]() {
    for (size_t i = next++; i < n && !failed.load(); i = next++) {
      todo[i].status = apply(i, snapshotter_.PrepareDetached(ctx, todo[i].key, {}));
      if (!todo[i].status.ok()) {
        failed = true;
      }
    }
  };
  size_t threads = options_.max_parallel > 0 ? static_cast<size_t>(options_.max_parallel)
                                             : std::thread::hardware_concurrency();
  threads = std::max<size_t>(1, std::min(threads, n - first));
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) {
    pool.emplace_back(work);
  }
  work();
  for (std::thread& t : pool) {
    t.join();
  }
  if (absl::Status st = first_error(); !st.ok()) {
    discard();
    return st;
  }
  for (size_t i = first; i < n; ++i) {
    if (absl::Status st = commit(i); !st.ok()) {
      discard();
      return st;
    }
    applied[i] = todo[i].applied;
  }
  return applied;
}

}  // namespace berth::snapshotd
