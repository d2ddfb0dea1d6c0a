#pragma once

// contentd's metadata (sqlite, <root>/metadata.db): the SQL behind the local store.
//   namespaces       the registry (name, labels, times)
//   blobs            one row per blob per namespace: (ns, digest) -> size, labels, times
//   ingests          one row per ingest in progress: (ns, ref) -> directory id, total,
//                    expected digest, start time
//   leases, lease_resources   what each lease holds (local_leases.cc and local_gc.cc query
//                    these through db() with their own SQL)
//   proxy_claims     (ns, digest) of blobs a proxy consumer (a request without a namespace
//                    header) wrote or asked for: berth's collections keep them; a row goes
//                    with its blobs row
//
// It also keeps the store's totals (distinct digests with a blobs row, their bytes, ingest
// rows) as counters: loaded once by LoadTotals() and moved by the calls below that insert or
// delete rows, applied when their transaction commits (at once outside a transaction), so a
// rolled-back transaction leaves them unchanged.
//
// Not thread-safe: FileStore serialises every call with its mutex. Times are unix nanos.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/digest.h"
#include "lib/base/labels.h"
#include "lib/content/content_store.h"
#include "lib/namespaces/namespace_store.h"
#include "lib/sqlite/sqlite.h"

namespace berth::contentd::internal {

// One row of the ingests table.
struct IngestRow {
  std::string ns;
  std::string ref;
  std::string id;  // directory name under ingest/
  int64_t total = 0;
  Digest expected;
  absl::Time started_at = absl::UnixEpoch();
};

// What the store holds (LocalContentStore::Stats).
struct StoredTotals {
  int64_t blobs = 0;    // distinct digests named by some blobs row (= blob files)
  int64_t bytes = 0;    // their total size
  int64_t ingests = 0;  // ingest rows
};

class ContentMetadata {
 public:
  // Opens (or creates) the database and brings the schema up to date.
  static absl::StatusOr<std::unique_ptr<ContentMetadata>> Open(const std::string& path);
  ContentMetadata(const ContentMetadata&) = delete;
  ContentMetadata& operator=(const ContentMetadata&) = delete;

  // For the leases and GC code's own queries. Row changes made through it are not counted:
  // blobs and ingests rows change only through the methods below.
  sqlite::Db* db() { return db_.get(); }

  // Runs `body` in one transaction; the totals move only if it commits. Not re-entrant.
  // Not `durable`: its commit is not fsync'd (sqlite::Db::VolatileTransaction), for rows whose
  // loss to a power cut start-up recovery repairs (an ingest's).
  absl::Status Transaction(const std::function<absl::Status()>& body, bool durable = true);

  // Counts every blob and ingest row (the one GROUP BY, at Open after recovery).
  absl::Status LoadTotals();
  const StoredTotals& totals() const { return totals_; }

  // --- namespaces ---
  // Inserts the namespace row if missing.
  absl::Status RegisterNamespace(const std::string& ns);
  // AlreadyExists if it is there.
  absl::Status CreateNamespace(const std::string& name, const LabelMap& labels);
  // nullopt when there is no such namespace.
  absl::StatusOr<std::optional<LabelMap>> NamespaceLabels(const std::string& name);
  absl::StatusOr<std::vector<namespaces::Namespace>> ListNamespaces();
  absl::Status SetNamespaceLabels(const std::string& name, const LabelMap& labels);
  // FailedPrecondition while it has blobs, ingests or leases; NotFound if missing.
  absl::Status DeleteNamespace(const std::string& name);
  // Every namespace with a registry row, a blob or an ingest.
  absl::StatusOr<std::vector<std::string>> AllNamespaces();

  // --- leases ---
  absl::StatusOr<bool> LeaseExists(const std::string& ns, const std::string& id);
  // Records that `lease` holds (type, id); recording it twice is a no-op.
  absl::Status AddLeaseResource(const std::string& ns, const std::string& lease,
                                absl::string_view type, absl::string_view id);

  // --- blobs ---
  absl::StatusOr<std::optional<content::Info>> GetBlob(const std::string& ns, const Digest& digest);
  absl::StatusOr<bool> BlobExists(const std::string& ns, const Digest& digest);
  // Whether any namespace has a row for `digest`.
  absl::StatusOr<bool> DigestReferenced(const std::string& digest);
  absl::Status InsertBlob(const std::string& ns, const Digest& digest, int64_t size,
                          const LabelMap& labels);
  // The size of the row removed, nullopt if there was none.
  absl::StatusOr<std::optional<int64_t>> DeleteBlob(const std::string& ns, const Digest& digest);
  absl::Status SetBlobLabels(const std::string& ns, const Digest& digest, const LabelMap& labels,
                             absl::Time updated_at);
  // Calls `fn` on each blob of `ns` in digest order.
  absl::Status ForEachBlob(const std::string& ns,
                           const std::function<absl::Status(content::Info)>& fn);
  // Records that a proxy consumer uses the blob (no-op when recorded).
  absl::Status ClaimForProxy(const std::string& ns, const Digest& digest);
  // The digests of `ns` a proxy consumer claimed.
  absl::StatusOr<std::set<std::string>> ProxyClaims(const std::string& ns);
  // Digests named by any row (recovery).
  absl::StatusOr<std::set<std::string>> ReferencedDigests();
  // Drops every row of `digest` (recovery, before LoadTotals: not counted).
  absl::Status ForgetDigest(const std::string& digest);

  // --- ingests ---
  absl::StatusOr<std::optional<IngestRow>> GetIngest(const std::string& ns, const std::string& ref);
  // Ingests of `ns` in ref order, or of every namespace when `ns` is nullopt.
  absl::StatusOr<std::vector<IngestRow>> ListIngests(const std::optional<std::string>& ns);
  absl::Status InsertIngest(const IngestRow& row);
  // Stores row.total and row.expected.
  absl::Status UpdateIngest(const IngestRow& row);
  // Deletes the ingest's row and the lease records of it.
  absl::Status DeleteIngest(const std::string& ns, const std::string& ref);

 private:
  explicit ContentMetadata(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}
  // Applies `delta` now, or when the open transaction commits.
  void Count(const StoredTotals& delta);

  std::unique_ptr<sqlite::Db> db_;
  StoredTotals totals_;
  StoredTotals pending_;
  bool in_transaction_ = false;
};

inline int64_t ToNanos(absl::Time t) { return absl::ToUnixNanos(t); }
inline absl::Time FromNanos(int64_t n) { return absl::FromUnixNanos(n); }

}  // namespace berth::contentd::internal
