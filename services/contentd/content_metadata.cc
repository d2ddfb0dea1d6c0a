#include "services/contentd/content_metadata.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"
#include "services/contentd/local_labels.h"

namespace berth::contentd::internal {
namespace {

const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      R"sql(
CREATE TABLE namespaces (
  name TEXT PRIMARY KEY,
  labels BLOB NOT NULL DEFAULT x'',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE blobs (
  ns TEXT NOT NULL,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  labels BLOB NOT NULL DEFAULT x'',
  PRIMARY KEY (ns, digest)
) WITHOUT ROWID;
CREATE INDEX blobs_by_digest ON blobs (digest);
CREATE TABLE ingests (
  ns TEXT NOT NULL,
  ref TEXT NOT NULL,
  id TEXT NOT NULL UNIQUE,
  total INTEGER NOT NULL,
  expected TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  PRIMARY KEY (ns, ref)
);
CREATE TABLE leases (
  ns TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  labels BLOB NOT NULL DEFAULT x'',
  PRIMARY KEY (ns, id)
);
CREATE TABLE lease_resources (
  ns TEXT NOT NULL,
  lease TEXT NOT NULL,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  PRIMARY KEY (ns, lease, type, id),
  FOREIGN KEY (ns, lease) REFERENCES leases (ns, id) ON DELETE CASCADE
);
CREATE INDEX lease_resources_by_resource ON lease_resources (ns, type, id);
)sql",
      R"sql(
CREATE TABLE proxy_claims (
  ns TEXT NOT NULL,
  digest TEXT NOT NULL,
  PRIMARY KEY (ns, digest)
) WITHOUT ROWID;
)sql",
  };
  return *migrations;
}

constexpr absl::string_view kBlobColumns = "digest, size, created_at, updated_at, labels";
constexpr absl::string_view kIngestColumns = "ns, ref, id, total, expected, started_at";

absl::StatusOr<content::Info> InfoFromRow(const sqlite::Statement& st) {
  absl::StatusOr<Digest> digest = Digest::Parse(st.Text(0));
  if (!digest.ok()) {
    return absl::DataLossError(
        absl::StrCat("metadata.db holds a malformed digest: ", digest.status().message()));
  }
  BERTH_ASSIGN_OR_RETURN(LabelMap labels, DecodeLabels(st.Text(4)));
  content::Info info;
  info.digest = *std::move(digest);
  info.size = st.Int(1);
  info.created_at = FromNanos(st.Int(2));
  info.updated_at = FromNanos(st.Int(3));
  info.labels = std::move(labels);
  return info;
}

absl::StatusOr<IngestRow> IngestFromRow(const sqlite::Statement& st) {
  IngestRow row;
  row.ns = st.Text(0);
  row.ref = st.Text(1);
  row.id = st.Text(2);
  row.total = st.Int(3);
  std::string expected = st.Text(4);
  if (!expected.empty()) {
    absl::StatusOr<Digest> d = Digest::Parse(expected);
    if (!d.ok()) {
      return absl::DataLossError(
          absl::StrCat("metadata.db: ingest ", row.ref, " has a malformed digest: ", expected));
    }
    row.expected = *std::move(d);
  }
  row.started_at = FromNanos(st.Int(5));
  return row;
}

absl::Status NamespaceNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("namespace ", name, ": not found"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContentMetadata>> ContentMetadata::Open(const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Db> db, sqlite::Db::Open(path, Migrations()));
  return std::unique_ptr<ContentMetadata>(new ContentMetadata(std::move(db)));
}

absl::Status ContentMetadata::Transaction(const std::function<absl::Status()>& body,
                                          bool durable) {
  pending_ = StoredTotals();
  in_transaction_ = true;
  absl::Status st = durable ? db_->Transaction(body) : db_->VolatileTransaction(body);
  in_transaction_ = false;
  if (st.ok()) {
    Count(pending_);
  }
  pending_ = StoredTotals();
  return st;
}

void ContentMetadata::Count(const StoredTotals& delta) {
  StoredTotals& into = in_transaction_ ? pending_ : totals_;
  into.blobs += delta.blobs;
  into.bytes += delta.bytes;
  into.ingests += delta.ingests;
}

absl::Status ContentMetadata::LoadTotals() {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement blobs,
                         db_->Prepare("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM "
                                      "(SELECT digest, MAX(size) AS size FROM blobs "
                                      "GROUP BY digest)"));
  BERTH_ASSIGN_OR_RETURN(bool row, blobs.Step());
  StoredTotals totals;
  if (row) {
    totals.blobs = blobs.Int(0);
    totals.bytes = blobs.Int(1);
  }
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement ingests, db_->Prepare("SELECT COUNT(*) FROM ingests"));
  BERTH_ASSIGN_OR_RETURN(row, ingests.Step());
  if (row) {
    totals.ingests = ingests.Int(0);
  }
  totals_ = totals;
  return absl::OkStatus();
}

// --- namespaces ------------------------------------------------------------------------------

absl::Status ContentMetadata::RegisterNamespace(const std::string& ns) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("INSERT OR IGNORE INTO namespaces "
                                      "(name, labels, created_at, updated_at) "
                                      "VALUES (?, x'', ?, ?)"));
  int64_t now = ToNanos(absl::Now());
  return st.Bind(1, ns).Bind(2, now).Bind(3, now).Run();
}

absl::Status ContentMetadata::CreateNamespace(const std::string& name, const LabelMap& labels) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("INSERT OR IGNORE INTO namespaces "
                                      "(name, labels, created_at, updated_at) "
                                      "VALUES (?, ?, ?, ?)"));
  int64_t now = ToNanos(absl::Now());
  BERTH_RETURN_IF_ERROR(
      st.Bind(1, name).BindBlob(2, EncodeLabels(labels)).Bind(3, now).Bind(4, now).Run());
  if (db_->Changes() == 0) {
    return absl::AlreadyExistsError(absl::StrCat("namespace ", name, ": already exists"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LabelMap>> ContentMetadata::NamespaceLabels(const std::string& name) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT labels FROM namespaces WHERE name = ?"));
  BERTH_ASSIGN_OR_RETURN(bool row, st.Bind(1, name).Step());
  if (!row) {
    return std::optional<LabelMap>();
  }
  BERTH_ASSIGN_OR_RETURN(LabelMap labels, DecodeLabels(st.Text(0)));
  return std::optional<LabelMap>(std::move(labels));
}

absl::StatusOr<std::vector<namespaces::Namespace>> ContentMetadata::ListNamespaces() {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT name, labels FROM namespaces ORDER BY name"));
  std::vector<namespaces::Namespace> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(LabelMap labels, DecodeLabels(st.Text(1)));
    out.push_back(namespaces::Namespace{st.Text(0), std::move(labels)});
    return absl::OkStatus();
  }));
  return out;
}

absl::Status ContentMetadata::SetNamespaceLabels(const std::string& name, const LabelMap& labels) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare("UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?"));
  return st.BindBlob(1, EncodeLabels(labels)).Bind(2, ToNanos(absl::Now())).Bind(3, name).Run();
}

absl::Status ContentMetadata::DeleteNamespace(const std::string& name) {
  return Transaction([&]() -> absl::Status {
    for (absl::string_view table : {"blobs", "ingests", "leases"}) {
      BERTH_ASSIGN_OR_RETURN(
          sqlite::Statement st,
          db_->Prepare(absl::StrCat("SELECT 1 FROM ", table, " WHERE ns = ? LIMIT 1")));
      BERTH_ASSIGN_OR_RETURN(bool row, st.Bind(1, name).Step());
      if (row) {
        return absl::FailedPreconditionError(
            absl::StrCat("namespace ", name, " must be empty, but it still has ", table));
      }
    }
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement del,
                           db_->Prepare("DELETE FROM namespaces WHERE name = ?"));
    BERTH_RETURN_IF_ERROR(del.Bind(1, name).Run());
    if (db_->Changes() == 0) {
      return NamespaceNotFound(name);
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<std::string>> ContentMetadata::AllNamespaces() {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT name FROM namespaces UNION SELECT ns FROM blobs "
                                      "UNION SELECT ns FROM ingests"));
  std::vector<std::string> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.push_back(st.Text(0));
    return absl::OkStatus();
  }));
  return out;
}

// --- leases ----------------------------------------------------------------------------------

absl::StatusOr<bool> ContentMetadata::LeaseExists(const std::string& ns, const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT 1 FROM leases WHERE ns = ? AND id = ?"));
  return st.Bind(1, ns).Bind(2, id).Step();
}

absl::Status ContentMetadata::AddLeaseResource(const std::string& ns, const std::string& lease,
                                               absl::string_view type, absl::string_view id) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("INSERT OR IGNORE INTO lease_resources (ns, lease, type, id) "
                                      "VALUES (?, ?, ?, ?)"));
  return st.Bind(1, ns).Bind(2, lease).Bind(3, type).Bind(4, id).Run();
}

// --- blobs -----------------------------------------------------------------------------------

absl::StatusOr<std::optional<content::Info>> ContentMetadata::GetBlob(const std::string& ns,
                                                                      const Digest& digest) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare(absl::StrCat("SELECT ", kBlobColumns,
                                                   " FROM blobs WHERE ns = ? AND digest = ?")));
  BERTH_ASSIGN_OR_RETURN(bool row, st.Bind(1, ns).Bind(2, digest.ToString()).Step());
  if (!row) {
    return std::optional<content::Info>();
  }
  BERTH_ASSIGN_OR_RETURN(content::Info info, InfoFromRow(st));
  return std::optional<content::Info>(std::move(info));
}

absl::StatusOr<bool> ContentMetadata::BlobExists(const std::string& ns, const Digest& digest) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT 1 FROM blobs WHERE ns = ? AND digest = ?"));
  return st.Bind(1, ns).Bind(2, digest.ToString()).Step();
}

absl::StatusOr<bool> ContentMetadata::DigestReferenced(const std::string& digest) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT 1 FROM blobs WHERE digest = ? LIMIT 1"));
  return st.Bind(1, digest).Step();
}

absl::Status ContentMetadata::InsertBlob(const std::string& ns, const Digest& digest, int64_t size,
                                         const LabelMap& labels) {
  BERTH_ASSIGN_OR_RETURN(bool shared, DigestReferenced(digest.ToString()));
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement ins,
                         db_->Prepare("INSERT INTO blobs "
                                      "(ns, digest, size, created_at, updated_at, labels) "
                                      "VALUES (?, ?, ?, ?, ?, ?)"));
  int64_t now = ToNanos(absl::Now());
  BERTH_RETURN_IF_ERROR(ins.Bind(1, ns)
                            .Bind(2, digest.ToString())
                            .Bind(3, size)
                            .Bind(4, now)
                            .Bind(5, now)
                            .BindBlob(6, EncodeLabels(labels))
                            .Run());
  if (!shared) {
    Count(StoredTotals{1, size, 0});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int64_t>> ContentMetadata::DeleteBlob(const std::string& ns,
                                                                   const Digest& digest) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement del,
      db_->Prepare("DELETE FROM blobs WHERE ns = ? AND digest = ? RETURNING size"));
  BERTH_ASSIGN_OR_RETURN(bool row, del.Bind(1, ns).Bind(2, digest.ToString()).Step());
  if (!row) {
    return std::optional<int64_t>();
  }
  int64_t size = del.Int(0);
  BERTH_RETURN_IF_ERROR(del.Run());  // finish the statement
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement unclaim,
                         db_->Prepare("DELETE FROM proxy_claims WHERE ns = ? AND digest = ?"));
  BERTH_RETURN_IF_ERROR(unclaim.Bind(1, ns).Bind(2, digest.ToString()).Run());
  BERTH_ASSIGN_OR_RETURN(bool shared, DigestReferenced(digest.ToString()));
  if (!shared) {
    Count(StoredTotals{-1, -size, 0});
  }
  return std::optional<int64_t>(size);
}

absl::Status ContentMetadata::SetBlobLabels(const std::string& ns, const Digest& digest,
                                            const LabelMap& labels, absl::Time updated_at) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare("UPDATE blobs SET labels = ?, updated_at = ? WHERE ns = ? AND digest = ?"));
  return st.BindBlob(1, EncodeLabels(labels))
      .Bind(2, ToNanos(updated_at))
      .Bind(3, ns)
      .Bind(4, digest.ToString())
      .Run();
}

absl::Status ContentMetadata::ForEachBlob(const std::string& ns,
                                          const std::function<absl::Status(content::Info)>& fn) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare(absl::StrCat("SELECT ", kBlobColumns,
                                                   " FROM blobs WHERE ns = ? ORDER BY digest")));
  st.Bind(1, ns);
  return st.ForEachRow([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(content::Info info, InfoFromRow(st));
    return fn(std::move(info));
  });
}

absl::StatusOr<std::set<std::string>> ContentMetadata::ReferencedDigests() {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT DISTINCT digest FROM blobs"));
  std::set<std::string> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.insert(st.Text(0));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status ContentMetadata::ForgetDigest(const std::string& digest) {
  for (absl::string_view table : {"blobs", "proxy_claims"}) {
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                           db_->Prepare(absl::StrCat("DELETE FROM ", table, " WHERE digest = ?")));
    BERTH_RETURN_IF_ERROR(st.Bind(1, digest).Run());
  }
  return absl::OkStatus();
}

absl::Status ContentMetadata::ClaimForProxy(const std::string& ns, const Digest& digest) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare("INSERT OR IGNORE INTO proxy_claims (ns, digest) VALUES (?, ?)"));
  return st.Bind(1, ns).Bind(2, digest.ToString()).Run();
}

absl::StatusOr<std::set<std::string>> ContentMetadata::ProxyClaims(const std::string& ns) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT digest FROM proxy_claims WHERE ns = ?"));
  st.Bind(1, ns);
  std::set<std::string> claims;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    claims.insert(st.Text(0));
    return absl::OkStatus();
  }));
  return claims;
}

// --- ingests ---------------------------------------------------------------------------------

absl::StatusOr<std::optional<IngestRow>> ContentMetadata::GetIngest(const std::string& ns,
                                                                    const std::string& ref) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare(absl::StrCat("SELECT ", kIngestColumns,
                                                   " FROM ingests WHERE ns = ? AND ref = ?")));
  BERTH_ASSIGN_OR_RETURN(bool row, st.Bind(1, ns).Bind(2, ref).Step());
  if (!row) {
    return std::optional<IngestRow>();
  }
  BERTH_ASSIGN_OR_RETURN(IngestRow ingest, IngestFromRow(st));
  return std::optional<IngestRow>(std::move(ingest));
}

absl::StatusOr<std::vector<IngestRow>> ContentMetadata::ListIngests(
    const std::optional<std::string>& ns) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare(absl::StrCat("SELECT ", kIngestColumns, " FROM ingests",
                                ns.has_value() ? " WHERE ns = ?" : "", " ORDER BY ns, ref")));
  if (ns.has_value()) {
    st.Bind(1, *ns);
  }
  std::vector<IngestRow> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(IngestRow row, IngestFromRow(st));
    out.push_back(std::move(row));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status ContentMetadata::InsertIngest(const IngestRow& row) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement ins,
                         db_->Prepare("INSERT INTO ingests "
                                      "(ns, ref, id, total, expected, started_at) "
                                      "VALUES (?, ?, ?, ?, ?, ?)"));
  BERTH_RETURN_IF_ERROR(ins.Bind(1, row.ns)
                            .Bind(2, row.ref)
                            .Bind(3, row.id)
                            .Bind(4, row.total)
                            .Bind(5, row.expected.ToString())
                            .Bind(6, ToNanos(row.started_at))
                            .Run());
  Count(StoredTotals{0, 0, 1});
  return absl::OkStatus();
}

absl::Status ContentMetadata::UpdateIngest(const IngestRow& row) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement up,
      db_->Prepare("UPDATE ingests SET total = ?, expected = ? WHERE ns = ? AND ref = ?"));
  return up.Bind(1, row.total)
      .Bind(2, row.expected.ToString())
      .Bind(3, row.ns)
      .Bind(4, row.ref)
      .Run();
}

absl::Status ContentMetadata::DeleteIngest(const std::string& ns, const std::string& ref) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement del,
                         db_->Prepare("DELETE FROM ingests WHERE ns = ? AND ref = ?"));
  BERTH_RETURN_IF_ERROR(del.Bind(1, ns).Bind(2, ref).Run());
  if (db_->Changes() > 0) {
    Count(StoredTotals{0, 0, -1});
  }
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement res,
      db_->Prepare("DELETE FROM lease_resources WHERE ns = ? AND type = 'ingests' AND id = ?"));
  return res.Bind(1, ns).Bind(2, ref).Run();
}

}  // namespace berth::contentd::internal
