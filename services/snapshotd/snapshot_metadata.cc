#include "services/snapshotd/snapshot_metadata.h"


#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"
#include "lib/sqlite/string_map.h"

namespace berth::snapshotd {

namespace {

const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      R"sql(
CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ns TEXT NOT NULL,
  key TEXT NOT NULL,
  kind INTEGER NOT NULL,
  parent_id INTEGER REFERENCES snapshots (id),
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0,
  UNIQUE (ns, key)
);
CREATE INDEX snapshots_by_parent ON snapshots (parent_id);
CREATE TABLE lease_resources (
  ns TEXT NOT NULL,
  lease TEXT NOT NULL,
  key TEXT NOT NULL,
  PRIMARY KEY (ns, lease, key)
) WITHOUT ROWID;
CREATE INDEX lease_resources_by_key ON lease_resources (ns, key);
)sql",
      "ALTER TABLE snapshots ADD COLUMN proxy_owned INTEGER NOT NULL DEFAULT 0;",
  };
  return *migrations;
}

constexpr absl::string_view kColumns =
    "s.id, COALESCE(s.parent_id, 0), s.ns, s.kind, s.key, COALESCE(p.key, ''), s.labels, "
    "s.created_at, s.updated_at, s.size, s.inodes, s.proxy_owned "
    "FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id";

int64_t ToNanos(absl::Time t) { return absl::ToUnixNanos(t); }

absl::StatusOr<SnapshotRecord> FromRow(const sqlite::Statement& st) {
  SnapshotRecord r;
  r.id = st.Int(0);
  r.parent_id = st.Int(1);
  r.ns = st.Text(2);
  int64_t kind = st.Int(3);
  if (kind < 1 || kind > 3) {
    return absl::DataLossError(absl::StrCat("metadata.db: snapshot ", r.id, " has kind ", kind));
  }
  r.info.kind = static_cast<snapshots::Kind>(kind);
  r.info.name = st.Text(4);
  r.info.parent = st.Text(5);
  absl::StatusOr<snapshots::Labels> labels = DecodeLabels(st.Text(6));
  if (!labels.ok()) {
    return labels.status();
  }
  r.info.labels = std::move(*labels);
  r.info.created_at = absl::FromUnixNanos(st.Int(7));
  r.info.updated_at = absl::FromUnixNanos(st.Int(8));
  r.usage.size = st.Int(9);
  r.usage.inodes = st.Int(10);
  r.proxy_owned = st.Int(11) != 0;
  return r;
}

absl::Status RunStatement(sqlite::Db* db, absl::string_view sql,
                          const std::function<void(sqlite::Statement&)>& bind) {
  absl::StatusOr<sqlite::Statement> st = db->Prepare(sql);
  if (!st.ok()) {
    return st.status();
  }
  bind(*st);
  return st->Run();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<sqlite::Db>> db = sqlite::Db::Open(path, Migrations());
  if (!db.ok()) {
    return db.status();
  }
  return std::unique_ptr<MetaStore>(new MetaStore(std::move(*db)));
}

absl::StatusOr<std::optional<SnapshotRecord>> MetaStore::Get(const std::string& ns,
                                                             const std::string& key) {
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " WHERE s.ns = ? AND s.key = ?"));
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ns).Bind(2, key);
  absl::StatusOr<bool> row = st->Step();
  if (!row.ok()) {
    return row.status();
  }
  if (!*row) {
    return std::optional<SnapshotRecord>();
  }
  absl::StatusOr<SnapshotRecord> r = FromRow(*st);
  if (!r.ok()) {
    return r.status();
  }
  return std::optional<SnapshotRecord>(std::move(*r));
}

absl::StatusOr<std::vector<int64_t>> MetaStore::Chain(int64_t id) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(R"sql(
WITH RECURSIVE chain(id, parent_id, depth) AS (
  SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
  UNION ALL
  SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id
)
SELECT id FROM chain ORDER BY depth)sql");
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, id);
  std::vector<int64_t> ids;
  absl::Status each = st->ForEachRow([&]() -> absl::Status {
    ids.push_back(st->Int(0));
    return absl::OkStatus();
  });
  if (!each.ok()) {
    return each;
  }
  return ids;
}

absl::Status MetaStore::MarkProxyOwned(int64_t id) {
  return RunStatement(db_.get(), "UPDATE snapshots SET proxy_owned = 1 WHERE id = ?",
                      [&](sqlite::Statement& st) { st.Bind(1, id); });
}

absl::StatusOr<int64_t> MetaStore::Insert(const std::string& ns, const std::string& key,
                                          snapshots::Kind kind, int64_t parent_id,
                                          const snapshots::Labels& labels, absl::Time now) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "INSERT INTO snapshots (ns, key, kind, parent_id, labels, created_at, updated_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ns).Bind(2, key).Bind(3, static_cast<int64_t>(kind));
  if (parent_id == 0) {
    st->BindNull(4);
  } else {
    st->Bind(4, parent_id);
  }
  st->Bind(5, EncodeLabels(labels)).Bind(6, ToNanos(now)).Bind(7, ToNanos(now));
  if (absl::Status s = st->Run(); !s.ok()) {
    return s;
  }
  return db_->LastInsertRowId();
}

absl::Status MetaStore::SetParent(int64_t id, int64_t parent_id) {
  return RunStatement(db_.get(), "UPDATE snapshots SET parent_id = ? WHERE id = ?",
                      [&](sqlite::Statement& st) {
                        if (parent_id == 0) {
                          st.BindNull(1);
                        } else {
                          st.Bind(1, parent_id);
                        }
                        st.Bind(2, id);
                      });
}

absl::Status MetaStore::MarkCommitted(int64_t id, const std::string& name,
                                      const snapshots::Labels& labels,
                                      const snapshots::Usage& usage, absl::Time now) {
  return RunStatement(db_.get(),
                      "UPDATE snapshots SET key = ?, kind = ?, labels = ?, size = ?, inodes = ?, "
                      "created_at = ?, updated_at = ? WHERE id = ?",
                      [&](sqlite::Statement& st) {
                        st.Bind(1, name)
                            .Bind(2, static_cast<int64_t>(snapshots::Kind::kCommitted))
                            .Bind(3, EncodeLabels(labels))
                            .Bind(4, usage.size)
                            .Bind(5, usage.inodes)
                            .Bind(6, ToNanos(now))
                            .Bind(7, ToNanos(now))
                            .Bind(8, id);
                      });
}

absl::Status MetaStore::SetLabels(int64_t id, const snapshots::Labels& labels, absl::Time now) {
  return RunStatement(db_.get(), "UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?",
                      [&](sqlite::Statement& st) {
                        st.Bind(1, EncodeLabels(labels)).Bind(2, ToNanos(now)).Bind(3, id);
                      });
}

absl::StatusOr<int64_t> MetaStore::CountChildren(int64_t id) {
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("SELECT COUNT(*) FROM snapshots WHERE parent_id = ?");
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, id);
  absl::StatusOr<bool> row = st->Step();
  if (!row.ok()) {
    return row.status();
  }
  return *row ? st->Int(0) : 0;
}

absl::Status MetaStore::Delete(int64_t id) {
  return RunStatement(db_.get(), "DELETE FROM snapshots WHERE id = ?",
                      [&](sqlite::Statement& st) { st.Bind(1, id); });
}

absl::StatusOr<std::vector<SnapshotRecord>> MetaStore::List(const std::string& ns) {
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " WHERE s.ns = ? ORDER BY s.key"));
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ns);
  std::vector<SnapshotRecord> out;
  absl::Status each = st->ForEachRow([&]() -> absl::Status {
    absl::StatusOr<SnapshotRecord> r = FromRow(*st);
    if (!r.ok()) {
      return r.status();
    }
    out.push_back(std::move(*r));
    return absl::OkStatus();
  });
  if (!each.ok()) {
    return each;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> MetaStore::Namespaces() {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT DISTINCT ns FROM snapshots ORDER BY ns"));
  std::vector<std::string> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.push_back(st.Text(0));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::set<int64_t>> MetaStore::AllIds() {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare("SELECT id FROM snapshots");
  if (!st.ok()) {
    return st.status();
  }
  std::set<int64_t> ids;
  absl::Status each = st->ForEachRow([&]() -> absl::Status {
    ids.insert(st->Int(0));
    return absl::OkStatus();
  });
  if (!each.ok()) {
    return each;
  }
  return ids;
}

absl::Status MetaStore::AddLeaseResource(const std::string& ns, const std::string& lease,
                                         const std::string& key) {
  return RunStatement(db_.get(),
                      "INSERT OR IGNORE INTO lease_resources (ns, lease, key) VALUES (?, ?, ?)",
                      [&](sqlite::Statement& st) { st.Bind(1, ns).Bind(2, lease).Bind(3, key); });
}

absl::Status MetaStore::RenameLeaseResources(const std::string& ns, const std::string& from,
                                             const std::string& to) {
  return RunStatement(db_.get(),
                      "UPDATE OR IGNORE lease_resources SET key = ? WHERE ns = ? AND key = ?",
                      [&](sqlite::Statement& st) { st.Bind(1, to).Bind(2, ns).Bind(3, from); });
}

absl::Status MetaStore::DeleteLeaseResources(const std::string& ns, const std::string& key) {
  return RunStatement(db_.get(), "DELETE FROM lease_resources WHERE ns = ? AND key = ?",
                      [&](sqlite::Statement& st) { st.Bind(1, ns).Bind(2, key); });
}

absl::StatusOr<std::vector<std::string>> MetaStore::LeaseResources(const std::string& ns,
                                                                   const std::string& lease) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "SELECT key FROM lease_resources WHERE ns = ? AND lease = ? ORDER BY key");
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ns).Bind(2, lease);
  std::vector<std::string> keys;
  absl::Status each = st->ForEachRow([&]() -> absl::Status {
    keys.push_back(st->Text(0));
    return absl::OkStatus();
  });
  if (!each.ok()) {
    return each;
  }
  return keys;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MetaStore::AllLeaseResources(
    const std::string& ns) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT lease, key FROM lease_resources WHERE ns = ?"));
  st.Bind(1, ns);
  std::vector<std::pair<std::string, std::string>> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.emplace_back(st.Text(0), st.Text(1));
    return absl::OkStatus();
  }));
  return out;
}

std::string EncodeLabels(const snapshots::Labels& labels) { return sqlite::EncodeStringMap(labels); }

absl::StatusOr<snapshots::Labels> DecodeLabels(const std::string& encoded) {
  absl::StatusOr<snapshots::Labels> labels = sqlite::DecodeStringMap(encoded);
  if (!labels.ok()) {
    return absl::DataLossError(
        absl::StrCat("metadata.db holds malformed labels: ", labels.status().message()));
  }
  return labels;
}

absl::Status ApplyLabelUpdate(snapshots::Labels* current, const snapshots::Labels& given,
                              const std::vector<std::string>& fieldpaths,
                              const std::string& key) {
  return berth::ApplyLabelUpdate(current, given, fieldpaths, absl::StrCat("snapshot ", key));
}

}  // namespace berth::snapshotd
