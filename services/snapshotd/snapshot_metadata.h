#pragma once

// snapshotd's metadata (sqlite, <root>/metadata.db): one row per snapshot per (namespace, key)
// with a numeric id that names its directory on disk (<root>/snapshots/<id>), its kind, its
// parent (by id, so chains of any depth are one recursive query), labels, times and, for a
// committed snapshot, its usage measured at commit. lease_resources records which snapshots
// were created under which lease (contentd owns leases; snapshotd only records); proxy_owned
// marks a snapshot a proxy consumer (a request without a namespace header) made, committed or
// adopted, which berth's collector keeps.
//
// Not thread-safe: the snapshotter serialises every call with its own mutex. Methods that
// change several rows expect to run inside Transaction().

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/base/labels.h"
#include "lib/snapshots/snapshotter.h"
#include "lib/sqlite/sqlite.h"

namespace berth::snapshotd {

struct SnapshotRecord {
  int64_t id = 0;
  int64_t parent_id = 0;  // 0: none
  std::string ns;
  snapshots::Info info;   // kind, key/name, parent's name, labels, times
  snapshots::Usage usage;  // stored at commit (committed snapshots only)
  bool proxy_owned = false;
};

class MetaStore {
 public:
  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& path);
  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  absl::Status Transaction(const std::function<absl::Status()>& body) {
    return db_->Transaction(body);
  }

  // nullopt when (ns, key) has no snapshot.
  absl::StatusOr<std::optional<SnapshotRecord>> Get(const std::string& ns, const std::string& key);
  // Ids of the chain above `id`, starting with `id` itself and ending at the root.
  absl::StatusOr<std::vector<int64_t>> Chain(int64_t id);
  // Inserts a snapshot and returns its id (never reused, even after a Remove).
  absl::StatusOr<int64_t> Insert(const std::string& ns, const std::string& key,
                                 snapshots::Kind kind, int64_t parent_id,
                                 const snapshots::Labels& labels, absl::Time now);
  // Turns active `id` into committed `name` with `labels` and `usage`.
  absl::Status MarkCommitted(int64_t id, const std::string& name, const snapshots::Labels& labels,
                             const snapshots::Usage& usage, absl::Time now);
  // Sets the parent of `id` (0: none). Only for an active snapshot without children, right
  // before it commits (LocalSnapshotter::CommitWithParent).
  absl::Status SetParent(int64_t id, int64_t parent_id);
  absl::Status MarkProxyOwned(int64_t id);
  absl::Status SetLabels(int64_t id, const snapshots::Labels& labels, absl::Time now);
  absl::StatusOr<int64_t> CountChildren(int64_t id);
  absl::Status Delete(int64_t id);
  // Every snapshot of `ns`, ordered by key.
  absl::StatusOr<std::vector<SnapshotRecord>> List(const std::string& ns);
  // Every id in use, all namespaces.
  absl::StatusOr<std::set<int64_t>> AllIds();
  // The namespaces that hold at least one snapshot.
  absl::StatusOr<std::vector<std::string>> Namespaces();

  // Lease bookkeeping.
  absl::Status AddLeaseResource(const std::string& ns, const std::string& lease,
                                const std::string& key);
  // Moves every lease's record of `from` to `to` (Commit renames a key to a name).
  absl::Status RenameLeaseResources(const std::string& ns, const std::string& from,
                                    const std::string& to);
  absl::Status DeleteLeaseResources(const std::string& ns, const std::string& key);
  absl::StatusOr<std::vector<std::string>> LeaseResources(const std::string& ns,
                                                          const std::string& lease);
  // Every (lease, key) record of `ns`.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> AllLeaseResources(
      const std::string& ns);

 private:
  explicit MetaStore(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}
  std::unique_ptr<sqlite::Db> db_;
};

// Labels as stored (a JSON object). DataLoss on malformed input.
std::string EncodeLabels(const snapshots::Labels& labels);
absl::StatusOr<snapshots::Labels> DecodeLabels(const std::string& encoded);

// containerd's Update semantics (berth::ApplyLabelUpdate, lib/base/labels.h) for the snapshot
// `key`: paths other than labels are InvalidArgument (a snapshot's other fields are immutable).
// Labels alone are checked with berth::ValidateLabels.
absl::Status ApplyLabelUpdate(snapshots::Labels* current, const snapshots::Labels& given,
                              const std::vector<std::string>& fieldpaths, const std::string& key);

}  // namespace berth::snapshotd
