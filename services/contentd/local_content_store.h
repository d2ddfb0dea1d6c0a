#pragma once

// contentd's local implementation of the content, lease and namespace contracts, over one
// directory:
//   <root>/blobs/<algorithm>/<hex>     committed blobs, immutable, shared by all namespaces
//   <root>/ingest/<id>/data            ingests in progress (id derived from namespace + ref)
//   <root>/metadata.db                 sqlite (WAL): namespaces, blobs per namespace, ingests,
//                                      leases and their resources
// A blob's bytes are renamed into blobs/ (after fsync, and only once the digest is verified)
// before its metadata row commits, so a crash at any point leaves either no visible blob or a
// complete one; Open() removes blob files no row references and ingest dirs no row owns.
//
// Choices beyond the contracts (see also local_gc.cc):
// - Writer::Write is write-through (one write(2) per call, no fsync): once it returns the bytes
//   survive a crash of the process, so an offset a client was told is never lost; Commit
//   fdatasyncs the data, renames it into blobs/ and fsyncs the directory.
// - Abort wins over an open writer (as in containerd): that writer's next call fails NotFound.
// - OpenWriter on a ref another writer holds waits for it as containerd's store does (ten
//   tries after random sleeps below 1, 2, 4 ... 512 ms), then fails Unavailable: a client's
//   previous Write call often lets go of the ref a moment after its stream closed.
// - A resumed ingest reports its last write as updated_at (the data file's mtime), not the
//   moment it was reopened, as containerd's store does (its testsuite: "status should be
//   consistent with version before close").
// - Commit falls back to WriterOptions::total / expected when its own size / expected are
//   unset. A lease id in the Context must exist (NotFound) for OpenWriter and Commit; reads
//   ignore it. Writing a blob that already exists under a lease adds it to that lease.
// - Deleting a lease (or a lease resource) collects at once, whatever `sync` says.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/content/content_store.h"
#include "lib/events/publisher.h"
#include "lib/leases/lease_manager.h"
#include "lib/namespaces/namespace_store.h"

namespace berth::contentd {

struct StoreOptions {
  std::string root;
  // Receives /content/delete events; may be null (no events).
  events::Publisher* publisher = nullptr;
  // How often expired leases are released (and what they held collected). Zero: never in
  // the background (tests call CollectGarbage()).
  absl::Duration lease_expiry_interval = absl::Seconds(60);
  // An ingest held by no lease is removed by a full CollectGarbage() pass once its data has
  // not changed for this long (containerd's 24 hours).
  absl::Duration ingest_expiry = absl::Hours(24);
};

struct StoreStats {
  int64_t blobs = 0;        // distinct blob files on disk
  int64_t bytes = 0;        // their total size
  int64_t ingests = 0;      // ingests in progress
};

struct GcResult {
  int64_t blobs_removed = 0;
  int64_t leases_expired = 0;
  // Ingests removed: those a deleted or expired lease alone held, and (in a full pass) those
  // with no lease untouched for StoreOptions::ingest_expiry. An ingest with an open writer
  // is never removed by GC.
  int64_t ingests_removed = 0;
  // The digests removed, in the order they went (a digest removed from two namespaces in a
  // pass over every namespace appears twice).
  std::vector<std::string> removed;
};

class LocalContentStore : public content::ContentStore,
                          public leases::LeaseManager,
                          public namespaces::NamespaceStore {
 public:
  // Creates <root> if needed, takes an exclusive lock on <root>/lock (FailedPrecondition if
  // another process or another open store holds it), brings the schema up to date and recovers
  // from a crash (see the top of this file). Starts the lease expiry thread.
  static absl::StatusOr<std::unique_ptr<LocalContentStore>> Open(const StoreOptions& options);
  // Stops the expiry thread. Writers and readers must not outlive the store.
  ~LocalContentStore() override;

  // The three contracts share method names (Create, Delete, List, Update); bring them all into
  // scope so calls through a LocalContentStore resolve by signature.
  using content::Manager::Delete;
  using content::Manager::Update;
  using leases::LeaseManager::Create;
  using leases::LeaseManager::Delete;
  using leases::LeaseManager::List;
  using namespaces::NamespaceStore::Create;
  using namespaces::NamespaceStore::Delete;
  using namespaces::NamespaceStore::List;
  using namespaces::NamespaceStore::Update;

  virtual StoreStats Stats() = 0;

  // One full mark-and-sweep pass over every namespace (containerd's model): roots are blobs
  // labelled `containerd.io/gc.root` and everything a live lease holds; blobs reachable from a
  // root through `containerd.io/gc.ref.content*` labels stay; every other blob is removed from
  // its namespace (and from disk when no namespace has it), publishing /content/delete.
  // Expired leases (label `containerd.io/gc.expire`, RFC 3339) are deleted first.
  // Not run automatically on every namespace: a blob written with no lease and no label (as
  // containerd's proxy clients write, keeping their own references above us) is only collected
  // by an explicit pass. Deleting or expiring a lease collects what it alone kept alive.
  virtual absl::StatusOr<GcResult> CollectGarbage() = 0;
  // The same pass over namespace `ns` alone (expired leases are still deleted in every
  // namespace). InvalidArgument for a malformed namespace; an unknown one has nothing to collect.
  virtual absl::StatusOr<GcResult> CollectNamespace(const std::string& ns) = 0;

 protected:
  LocalContentStore() = default;
};

}  // namespace berth::contentd
