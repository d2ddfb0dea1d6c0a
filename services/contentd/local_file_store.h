#pragma once

// Internal to contentd_store: the one implementation behind LocalContentStore, split over
//   local_content_store.cc  Open, crash recovery, helpers shared by the files below, Stats
//   local_writer.cc         OpenWriter, the writer
//   local_commit.cc         Commit (group commit of concurrent ones)
//   local_blobs.cc          reading, and the blobs and ingests a namespace holds (Manager,
//                           IngestManager)
//   local_namespaces.cc     the namespace registry
//   local_leases.cc         leases
//   local_gc.cc             garbage collection and lease expiry
//   content_metadata.cc     the SQL behind all of them
// Nothing outside this folder includes it.
//
// Locking: mu_ guards the database and every change to files under blobs/ and ingest/ other
// than appending to an ingest's data (which only the writer holding the ref does, unlocked).
// The invariant mu_ protects: a blob file exists if and only if some blobs row names its digest
// (between Open()s; a crash can only leave an extra file, which Open removes).

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "lib/base/group_commit.h"
#include "lib/base/unique_fd.h"
#include "lib/sqlite/sqlite.h"
#include "services/contentd/content_metadata.h"
#include "services/contentd/local_content_store.h"
#include "services/contentd/local_labels.h"

namespace berth::contentd::internal {

// Shared between an open writer and the store while the writer holds its ref.
struct ActiveIngest {
  std::atomic<int64_t> offset{0};
  std::atomic<int64_t> updated_ns{0};  // unix nanos of the last write
  std::atomic<bool> aborted{false};    // Abort() removed the ingest under the writer
};

// A blob removed from a namespace, to be announced with /content/delete.
struct Removal {
  std::string ns;
  Digest digest;
};

// What a collection of one namespace works from (FileStore::LoadGcGraphLocked).
struct GcGraph {
  std::map<std::string, LabelMap> blobs;      // digest -> labels
  std::map<std::string, std::string> leased;  // digest -> a live lease that holds it
  std::map<std::string, std::string> flat;    // the same for containerd.io/gc.flat leases
  std::set<std::string> leased_ingests;       // refs a live lease holds
  std::set<std::string> claimed;              // digests a proxy consumer claimed
};

class FileStore final : public LocalContentStore {
 public:
  FileStore(StoreOptions options, std::unique_ptr<ContentMetadata> meta, UniqueFd lock_fd);
  ~FileStore() override;
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  // Crash recovery, then the totals counted; called once by Open() before the store is shared.
  absl::Status Recover();
  // Starts the lease expiry thread (if the interval is positive).
  void StartExpiryThread();

  // content::Provider
  absl::StatusOr<std::unique_ptr<content::Reader>> OpenReader(const Context& ctx,
                                                              const Digest& digest) override;
  // content::Ingester
  absl::StatusOr<std::unique_ptr<content::Writer>> OpenWriter(
      const Context& ctx, const content::WriterOptions& opts) override;
  // content::Manager
  absl::StatusOr<content::Info> GetInfo(const Context& ctx, const Digest& digest) override;
  absl::StatusOr<content::Info> Update(const Context& ctx, const content::Info& info,
                                       const std::vector<std::string>& fieldpaths) override;
  absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                    const std::function<absl::Status(const content::Info&)>& fn) override;
  absl::Status Delete(const Context& ctx, const Digest& digest) override;
  // content::IngestManager
  absl::StatusOr<content::IngestStatus> GetStatus(const Context& ctx,
                                                  const std::string& ref) override;
  absl::StatusOr<std::vector<content::IngestStatus>> ListStatuses(
      const Context& ctx, const std::vector<std::string>& filters) override;
  absl::Status Abort(const Context& ctx, const std::string& ref) override;

  // leases::LeaseManager (local_leases.cc)
  absl::StatusOr<leases::Lease> Create(const Context& ctx, const std::string& id,
                                       const std::map<std::string, std::string>& labels) override;
  absl::Status Delete(const Context& ctx, const std::string& id, bool sync) override;
  absl::StatusOr<std::vector<leases::Lease>> List(const Context& ctx,
                                                  const std::vector<std::string>& filters) override;
  absl::Status AddResource(const Context& ctx, const std::string& lease,
                           const leases::Resource& resource) override;
  absl::Status DeleteResource(const Context& ctx, const std::string& lease,
                              const leases::Resource& resource) override;
  absl::StatusOr<std::vector<leases::Resource>> ListResources(const Context& ctx,
                                                              const std::string& lease) override;

  // namespaces::NamespaceStore
  absl::Status Create(const std::string& name, const namespaces::Labels& labels) override;
  absl::StatusOr<namespaces::Namespace> Get(const std::string& name) override;
  absl::StatusOr<std::vector<namespaces::Namespace>> List() override;
  absl::StatusOr<namespaces::Namespace> Update(const namespaces::Namespace& ns,
                                               const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const std::string& name) override;

  // LocalContentStore
  StoreStats Stats() override;
  absl::StatusOr<GcResult> CollectGarbage() override;
  absl::StatusOr<GcResult> CollectNamespace(const std::string& ns) override;

  // --- used by the writer (local_content_store.cc) ---
  // Makes the verified, fsynced ingest data a blob in ctx.ns (see Writer::Commit). Concurrent
  // calls are group-committed (local_commit.cc): they share the fsyncs of blobs/ and the WAL.
  absl::Status CommitIngest(const Context& ctx, const IngestRow& row,
                            const std::shared_ptr<ActiveIngest>& active, const Digest& digest,
                            int64_t size, const LabelMap& labels);
  // Drops the writer's hold on the ref (no-op if Abort already took it away).
  void ReleaseRef(const std::string& key, const std::shared_ptr<ActiveIngest>& active);

  std::string BlobPath(const Digest& digest) const;
  std::string IngestDir(const std::string& id) const;
  std::string IngestDataPath(const std::string& id) const;

 private:
  // NotFound unless `lease` is empty or names a lease in `ns`.
  absl::Status CheckLeaseLocked(const std::string& ns, const std::string& lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  content::IngestStatus StatusOf(const IngestRow& row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the ingest's row (and lease records of it) in a transaction, then its directory.
  absl::Status RemoveIngestLocked(const IngestRow& row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unlinks blob files whose digest no blobs row names any more.
  void RemoveUnreferencedFilesLocked(const std::vector<Removal>& removed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes /content/delete for each removal (call without mu_ held).
  void Publish(const std::vector<Removal>& removed);

  // --- garbage collection (local_gc.cc) ---
  struct GcScope {
    bool full = false;              // every blob and unleased ingest is a candidate
    std::set<std::string> blobs;    // otherwise only these digests...
    std::set<std::string> ingests;  // ...and these refs
  };
  absl::Status LoadGcGraphLocked(const std::string& ns, GcGraph* graph)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What berth itself holds in `ns` (leases, gc.root, gc.ref.content labels; proxy claims do
  // not count), digest -> why, for refusing a proxy consumer's Delete and hiding it from its
  // Walk.
  absl::StatusOr<std::map<std::string, std::string>> HeldByBerthLocked(const std::string& ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records what `ctx` now holds of an existing or committed blob: its lease, and a proxy
  // consumer's claim.
  absl::Status HoldForCallerLocked(const Context& ctx, const Digest& digest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks from the namespace's roots (and proxy claims) and removes the unreachable
  // candidates.
  absl::Status CollectLocked(const std::string& ns, const GcScope& scope, GcResult* result,
                             std::vector<Removal>* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes the lease and collects what it alone held.
  absl::Status DeleteLeaseLocked(const std::string& ns, const std::string& id, GcResult* result,
                                 std::vector<Removal>* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes every lease whose containerd.io/gc.expire has passed.
  absl::Status ExpireLeasesLocked(GcResult* result, std::vector<Removal>* removed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpiryLoop();
  // CollectGarbage (`only` null) or CollectNamespace (`*only`).
  absl::StatusOr<GcResult> FullPass(const std::string* only);

  // --- opening a writer (local_writer.cc) ---
  struct OpenedIngest {
    IngestRow row;
    UniqueFd fd;  // the data file, opened for appending
  };
  // Takes the ref for `active` and opens its ingest, waiting (as containerd's store does) for
  // a writer that still holds the ref: the previous Write call of the same client often
  // releases it a moment after its stream closed. Unavailable if it stays held.
  absl::StatusOr<OpenedIngest> LockAndOpenIngest(const Context& ctx,
                                                 const content::WriterOptions& opts,
                                                 const std::shared_ptr<ActiveIngest>& active);
  // AlreadyExists if `expected` is already a blob in ctx.ns (the lease, if any, then holds it).
  absl::Status CheckNotCommittedLocked(const Context& ctx, const Digest& expected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<OpenedIngest> ResumeIngestLocked(const Context& ctx,
                                                  const content::WriterOptions& opts, IngestRow row)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<OpenedIngest> CreateIngestLocked(const Context& ctx,
                                                  const content::WriterOptions& opts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // --- committing (local_commit.cc): group commit ---
  struct PendingCommit;  // a CommitIngest in the queue
  // The front of the queue commits `group` (its own and those queued behind it).
  void CommitGroup(const std::vector<PendingCommit*>& group) ABSL_LOCKS_EXCLUDED(mu_);
  // Checks one commit and renames its data into blobs/ (not fsynced yet). A digest ctx.ns has
  // already: the ingest is dropped, p.duplicate set, AlreadyExists.
  absl::Status PrepareCommitLocked(PendingCommit& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Prepared commits made blobs: one fsync of each blobs/<alg> renamed into, then every row in
  // one transaction; on failure each renamed file goes back to its ingest. Sets each status.
  void InsertGroupLocked(const std::vector<PendingCommit*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commit of a digest ctx.ns already has: drops the ingest, and the lease holds the blob.
  absl::Status DropDuplicateIngestLocked(const Context& ctx, const IngestRow& row,
                                         const Digest& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Renames the ingest's data to the blob's path unless that file exists (another namespace
  // has the blob); returns whether it renamed. The caller fsyncs the directory.
  absl::StatusOr<bool> MoveIntoBlobsLocked(const IngestRow& row, const Digest& digest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StoreOptions options_;
  const UniqueFd lock_fd_;  // flock(LOCK_EX) on <root>/lock while the store is open
  absl::Mutex mu_;
  std::unique_ptr<ContentMetadata> meta_ ABSL_GUARDED_BY(mu_);
  // meta_'s database, for the leases and GC code's own queries.
  sqlite::Db* db_ ABSL_GUARDED_BY(mu_);
  // Refs held by open writers, keyed "<ns>/<ref>".
  std::map<std::string, std::shared_ptr<ActiveIngest>> active_ ABSL_GUARDED_BY(mu_);
  // CommitIngests waiting; the front one commits for the group (taking mu_: never queue while
  // holding it). At most 64 commits in one transaction.
  GroupCommitQueue<PendingCommit> commits_{64};
  absl::Notification stop_;
  std::thread expiry_thread_;
};

// Creates directory `path` (0755) if missing; fsyncs `parent` when it did, so the new
// directory survives a crash.
absl::Status EnsureDir(const std::string& path, const std::string& parent);

// "<ns>/<ref>": namespaces cannot contain '/'.
inline std::string IngestKey(absl::string_view ns, absl::string_view ref) {
  return std::string(ns) + "/" + std::string(ref);
}

}  // namespace berth::contentd::internal
