#pragma once

// What snapshotd's two local snapshotters share: metadata (snapshot_metadata.h), the on-disk
// layout, crash safety, events and leases. They differ only in how a new snapshot's directory
// is filled and how it is mounted (overlay_snapshotter.h, native_snapshotter.h).
//
// Layout under SnapshotterOptions::root:
//   metadata.db              sqlite (WAL), see snapshot_metadata.h
//   lock                     flock'd by the open snapshotter (one per root)
//   snapshots/<id>/fs        a snapshot's own tree (overlay: its upper dir; native: a full copy)
//   snapshots/<id>/work      overlay's workdir (active overlay snapshots only)
//   snapshots/tmp-*          a snapshot being created (not yet owned by a record)
//   snapshots/removed-*      a snapshot being deleted (no longer owned by a record)
//
// Crash safety. Prepare/View fill a tmp-* directory first, then in one sqlite transaction
// insert the record and rename the directory to its id (fsyncing snapshots/) before the
// transaction commits: a crash before the commit leaves a directory no record owns, never a
// record without its directory. Commit only rewrites the record (the active's directory becomes
// the committed snapshot's, nothing is copied). Remove deletes the record first, then renames
// the directory to removed-<id> and deletes it. Cleanup (also run by Open) removes every entry
// of snapshots/ that no record owns and no call in progress is using.
//
// Choices beyond the contract:
// - Keys are any non-empty string (containerd applies no identifier rule to snapshot keys); the
//   namespace must be a valid identifier. Labels follow containerd's 4096-byte limit.
// - A Prepare or View labelled containerd.io/snapshot.ref=<name> of a snapshot committed on
//   the same parent answers AlreadyExists, as containerd's remote snapshotters do
//   (CheckTargetLocked): a containerd using snapshotd as its proxy reuses berth's chains.
// - Commit's labels become the committed snapshot's labels (the active's are not carried over,
//   as in containerd); its times are reset to the commit time.
// - A view without a parent is an empty read-only directory.
// - Cleanup works on the whole root (every namespace); its Context is not used.
// - Usage of an active or view snapshot is measured on each call; a committed snapshot's was
//   measured at commit.
// - Leases: a call with ctx.lease records the snapshot it creates (Prepare, View, Commit's new
//   name) in lease_resources; Commit moves the key's records to the name; Remove drops them.
//   contentd is the lease authority: CollectGarbage (local_snapshotter_gc.cc) is told by its
//   caller (SnapshotCollector, snapshot_collector.h) which recorded leases are gone.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lib/events/publisher.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/snapshotter.h"
#include "services/snapshotd/snapshot_metadata.h"

namespace berth::snapshotd {

struct SnapshotterOptions {
  std::string root;                      // required
  std::string kind = "overlayfs";        // "overlayfs" (default) or "native"
  events::Publisher* publisher = nullptr;  // /snapshot/prepare|commit|remove; may be null
  // Used by the overlay snapshotter's Open to check that overlayfs works on `root` (a test
  // mount with two lower dirs). Null: mount::SystemMounter(). Must outlive the snapshotter.
  mount::Mounter* mounter = nullptr;
  // Tests only: called by CollectGarbage at "records-deleted" (inside the transaction that
  // deletes the records, before it commits) and "dir-removed" (after each directory is gone).
  std::function<void(absl::string_view point)> gc_hook;
};

// What a collection learned outside snapshotd about one namespace (SnapshotCollector asks
// contentd).
struct GcRoots {
  // Recorded leases that contentd no longer has: they hold nothing.
  std::set<std::string> gone_leases;
  // Keys that contentd's leases hold as resources of type "snapshots/<snapshotter>".
  std::set<std::string> leased;
  // Keys named by containerd.io/gc.ref.snapshot.<snapshotter> labels on content that exists.
  std::set<std::string> referenced;
};

// Whether label `key` is containerd.io/gc.ref.snapshot.<snapshotter>, optionally followed by
// "/<anything>" (containerd's form for several references).
bool IsSnapshotRefLabel(absl::string_view key, absl::string_view snapshotter);

class LocalSnapshotter : public snapshots::Snapshotter {
 public:
  ~LocalSnapshotter() override;
  LocalSnapshotter(const LocalSnapshotter&) = delete;
  LocalSnapshotter& operator=(const LocalSnapshotter&) = delete;

  absl::StatusOr<snapshots::Info> Stat(const Context& ctx, const std::string& key) override;
  absl::StatusOr<snapshots::Info> Update(const Context& ctx, const snapshots::Info& info,
                                         const std::vector<std::string>& fieldpaths) override;
  absl::StatusOr<snapshots::Usage> GetUsage(const Context& ctx, const std::string& key) override;
  absl::StatusOr<std::vector<mount::Mount>> Mounts(const Context& ctx,
                                                   const std::string& key) override;
  absl::StatusOr<std::vector<mount::Mount>> Prepare(const Context& ctx, const std::string& key,
                                                    const std::string& parent,
                                                    const snapshots::Labels& labels) override;
  absl::StatusOr<std::vector<mount::Mount>> View(const Context& ctx, const std::string& key,
                                                 const std::string& parent,
                                                 const snapshots::Labels& labels) override;
  absl::Status Commit(const Context& ctx, const std::string& name, const std::string& key,
                      const snapshots::Labels& labels) override;
  absl::Status Remove(const Context& ctx, const std::string& key) override;
  absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                    const std::function<absl::Status(const snapshots::Info&)>& fn) override;
  absl::Status Cleanup(const Context& ctx) override;

  // Beyond the contract.
  // The on-disk directory an active snapshot's writes land in (<root>/snapshots/<id>/fs),
  // without mounting anything. NotFound if absent; FailedPrecondition unless active.
  absl::StatusOr<std::string> UpperDir(const Context& ctx, const std::string& key);
  // The namespaces holding at least one snapshot (start-up recovery walks them all).
  absl::StatusOr<std::vector<std::string>> Namespaces();
  // The keys and names recorded under ctx.lease in ctx.ns.
  absl::StatusOr<std::vector<std::string>> LeaseResources(const Context& ctx);

  // Detached snapshots (the parallel unpacker, parallel_unpacker.h): an active snapshot whose
  // parent is decided when it commits, so layers of one chain can be applied at the same time.
  // Only where a snapshot's own directory does not depend on its parent's contents
  // (SupportsDetached: overlay yes, native no, FailedPrecondition there).
  virtual bool SupportsDetached() const { return false; }
  // Prepare(key, no parent): the mounts of a new empty active snapshot (one rw bind mount of
  // its own directory). Events, leases and crash safety as Prepare.
  absl::StatusOr<std::vector<mount::Mount>> PrepareDetached(const Context& ctx,
                                                            const std::string& key,
                                                            const snapshots::Labels& labels);
  // Commit, and make committed `parent` (empty: none) the parent of `name`, in one transaction.
  // `key` must be active without a parent (PrepareDetached's). A crash leaves either the active
  // key or the committed name on its parent, nothing in between.
  absl::Status CommitWithParent(const Context& ctx, const std::string& name,
                                const std::string& key, const std::string& parent,
                                const snapshots::Labels& labels);
  // PrepareDetached of every key in one transaction (one fsync of metadata.db, one of
  // snapshots/) and one batch of events: all are made or none. Returns their mounts, in order.
  absl::StatusOr<std::vector<std::vector<mount::Mount>>> PrepareDetachedAll(
      const Context& ctx, const std::vector<std::string>& keys, const snapshots::Labels& labels);
  // One CommitWithParent each, bottom first, in one transaction: a step's parent may be the
  // name a step below it commits. All commit or none (a crash included); the error is the
  // first failing step's (AlreadyExists when a name is taken: nothing is committed then).
  struct CommitStep {
    std::string name;
    std::string key;
    std::string parent;
    snapshots::Labels labels;
  };
  absl::Status CommitChain(const Context& ctx, const std::vector<CommitStep>& steps);
  const std::string& root() const { return options_.root; }
  // "overlayfs" or "native": the <snapshotter> of gc.ref.snapshot labels and lease resources.
  const std::string& kind() const { return options_.kind; }

  // Garbage collection (local_snapshotter_gc.cc). The leases recorded in ctx.ns: a collection
  // reads them first and asks contentd which still exist, so a lease first recorded while it
  // asks is never taken for gone.
  absl::StatusOr<std::set<std::string>> RecordedLeases(const Context& ctx);
  // Removes every snapshot of ctx.ns nothing holds, and returns their keys, children first.
  // Held: a snapshot labelled containerd.io/gc.root; one recorded under a lease not in
  // roots.gone_leases, or in roots.leased or roots.referenced; an active or view snapshot
  // recorded under no lease at all (a container's rootfs: its record lives elsewhere); the
  // parent of a held snapshot and the snapshots its gc.ref.snapshot.<kind> labels name.
  // The records go in one transaction, then the directories (Cleanup finishes a removal a
  // crash interrupted); /snapshot/remove is published for each.
  // A proxy consumer's snapshots (made, committed or adopted by a request without a namespace
  // header) are held too: its references live in its own metadata.
  absl::StatusOr<std::vector<std::string>> CollectGarbage(const Context& ctx,
                                                          const GcRoots& roots);
  // What CollectGarbage would keep in ctx.ns for berth's own reasons (a proxy consumer's
  // snapshots not counted): key -> why it is held.
  absl::StatusOr<std::map<std::string, std::string>> HeldByBerth(const Context& ctx,
                                                                 const GcRoots& roots);
  // Asked before a Remove from a proxy consumer (ctx.proxy_consumer): an error refuses it.
  // Set once, before the snapshotter is served (snapshotd: SnapshotCollector::CheckProxyRemove).
  using RemoveGuard = std::function<absl::Status(const Context& ctx, const std::string& key)>;
  void GuardProxyRemoves(RemoveGuard guard) { remove_guard_ = std::move(guard); }

 protected:
  explicit LocalSnapshotter(SnapshotterOptions options);
  // Creates the layout, takes the lock, opens metadata.db and runs Cleanup. Called once by the
  // subclass's Open before the snapshotter is handed out.
  absl::Status Init();

  // Fills `dir` (an empty directory being created) for a new snapshot of `kind` whose parent
  // chain is `parents` (ids, nearest first; empty: no parent). Runs without the lock; the
  // parents are committed and stay on disk while it runs.
  virtual absl::Status Populate(const std::string& dir, snapshots::Kind kind,
                                const std::vector<int64_t>& parents) = 0;
  // The mounts of snapshot `id` of `kind` (active or view) on `parents` (nearest first).
  virtual std::vector<mount::Mount> MountsOf(int64_t id, snapshots::Kind kind,
                                             const std::vector<int64_t>& parents) const = 0;

  std::string SnapshotsDir() const { return options_.root + "/snapshots"; }
  std::string SnapshotDir(int64_t id) const;
  std::string FsDir(int64_t id) const { return SnapshotDir(id) + "/fs"; }
  std::string WorkDir(int64_t id) const { return SnapshotDir(id) + "/work"; }
  // A fresh name for a tmp-* directory under snapshots/.
  std::string TempName();
  const SnapshotterOptions& options() const { return options_; }

 private:
  // Prepare, View and PrepareDetached (local_snapshotter_create.cc), in these steps:
  absl::StatusOr<std::vector<mount::Mount>> Create(const Context& ctx, const std::string& key,
                                                   const std::string& parent,
                                                   const snapshots::Labels& labels,
                                                   snapshots::Kind kind);
  // containerd's remote-snapshotter protocol (its metadata layer's createSnapshot): a Prepare
  // or View labelled kSnapshotRefLabel=<target> first asks whether <target> exists. When
  // <target> is committed in `ns` on `parent`, AlreadyExists (containerd then adopts it,
  // finding it by a Walk on that label, which it is given if it lacks it); otherwise OK.
  absl::Status CheckTargetLocked(const Context& ctx, const std::string& parent,
                                 const snapshots::Labels& labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `key` is free and `parent` (if any) committed: returns the parent's chain, nearest first.
  absl::StatusOr<std::vector<int64_t>> CheckNewLocked(const std::string& ns,
                                                      const std::string& key,
                                                      const std::string& parent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes snapshots/<entry> and has the subclass populate it.
  absl::Status FillEntry(const std::string& entry, snapshots::Kind kind,
                         const std::vector<int64_t>& parents);
  // Removes snapshots/<entry> (a failure is logged: Cleanup retries) and its busy_ mark.
  void DropEntry(const std::string& entry) ABSL_LOCKS_EXCLUDED(mu_);
  // Inside RecordNew's transaction: renames snapshots/<temp> to snapshots/<id>, moving a
  // crash's leftover that holds <id> aside first (into *stale, marked busy).
  absl::Status RenameIntoPlaceLocked(const std::string& temp, int64_t id, std::string* stale)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts the record of the filled snapshots/<temp> and renames it to its id, in one
  // transaction; on failure nothing of it is left (the directory is dropped). Returns the id.
  absl::StatusOr<int64_t> RecordNew(const Context& ctx, const std::string& key,
                                    const std::string& parent, const snapshots::Labels& labels,
                                    snapshots::Kind kind, const std::vector<int64_t>& parents,
                                    const std::string& temp) ABSL_LOCKS_EXCLUDED(mu_);
  // RecordNew of keys[i] from temps[i] each, all in one transaction (all or none).
  absl::StatusOr<std::vector<int64_t>> RecordNewAll(const Context& ctx,
                                                    const std::vector<std::string>& keys,
                                                    const std::string& parent,
                                                    const snapshots::Labels& labels,
                                                    snapshots::Kind kind,
                                                    const std::vector<int64_t>& parents,
                                                    const std::vector<std::string>& temps)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Commit (one step, parent ignored) or, `detached`, CommitChain.
  absl::Status CommitImpl(const Context& ctx, const std::vector<CommitStep>& steps,
                          bool detached);
  absl::StatusOr<SnapshotRecord> GetLocked(const std::string& ns, const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<mount::Mount>> MountsLocked(const SnapshotRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Renames snapshots/<name> out of the way (to removed-...) and returns its new name.
  absl::StatusOr<std::string> MoveAside(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const std::string& ns, absl::string_view topic,
               const google::protobuf::Message& event);
  // The mark of a collection (local_snapshotter_gc.cc): id -> why it is held, from `roots`,
  // the records' own leases and labels, and (with proxy_owned_held) proxy consumers' marks.
  absl::StatusOr<std::map<int64_t, std::string>> MarkLocked(
      const std::string& ns, const std::vector<SnapshotRecord>& records, const GcRoots& roots,
      bool proxy_owned_held) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every event under `topic`, in one batch (Publisher::PublishAll).
  template <typename Event>
  void PublishAll(const std::string& ns, absl::string_view topic,
                  const std::vector<Event>& events) {
    std::vector<std::pair<std::string, const google::protobuf::Message*>> all;
    for (const Event& event : events) {
      all.emplace_back(std::string(topic), &event);
    }
    PublishEvents(ns, all);
  }
  void PublishEvents(
      const std::string& ns,
      const std::vector<std::pair<std::string, const google::protobuf::Message*>>& events);

  const SnapshotterOptions options_;
  RemoveGuard remove_guard_;
  int lock_fd_ = -1;
  absl::Mutex mu_;
  std::unique_ptr<MetaStore> meta_ ABSL_GUARDED_BY(mu_);
  // Entries of snapshots/ that calls in progress own (tmp-* being filled, removed-* being
  // deleted): Cleanup leaves them alone.
  std::set<std::string> busy_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> counter_{0};
};

// The label containerd's unpacker puts on a layer's snapshot: its chain id. On a Prepare or View
// it names the committed snapshot wanted (CheckTargetLocked); berth's unpacker commits each layer
// with it, so a containerd using snapshotd as its proxy snapshotter adopts berth's chains.
inline constexpr char kSnapshotRefLabel[] = "containerd.io/snapshot.ref";

// Validation shared by the snapshotters (and usable by a gRPC server before calling one).
absl::Status ValidateKey(absl::string_view what, const std::string& key);

// Shared by the local snapshotter's files.
inline constexpr absl::string_view kTempEntryPrefix = "tmp-";        // snapshots/tmp-*
inline constexpr absl::string_view kRemovedEntryPrefix = "removed-";  // snapshots/removed-*
absl::string_view KindName(snapshots::Kind kind);
absl::Status SnapshotNotFound(const std::string& key);

}  // namespace berth::snapshotd
