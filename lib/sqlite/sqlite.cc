#include "lib/sqlite/sqlite.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace berth::sqlite {

absl::Status Error(sqlite3* db, int rc, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    return absl::UnavailableError(msg);
  }
  if (rc == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(msg);
  }
  return absl::InternalError(msg);
}

Statement::~Statement() {
  if (stmt_ != nullptr) {
    sqlite3_finalize(stmt_);
  }
}

Statement::Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
  other.stmt_ = nullptr;
}

Statement& Statement::Bind(int index, absl::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::BindBlob(int index, absl::string_view bytes) {
  sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return Error(db_, rc, "sqlite step");
}

absl::Status Statement::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) {
      return row.status();
    }
    if (!*row) {
      return absl::OkStatus();
    }
  }
}

Statement& Statement::Reset() {
  sqlite3_reset(stmt_);
  return *this;
}

absl::Status Statement::ForEachRow(const std::function<absl::Status()>& row) {
  while (true) {
    absl::StatusOr<bool> more = Step();
    if (!more.ok()) {
      return more.status();
    }
    if (!*more) {
      return absl::OkStatus();
    }
    if (absl::Status st = row(); !st.ok()) {
      return st;
    }
  }
}

std::string Statement::Text(int column) const {
  const void* p = sqlite3_column_blob(stmt_, column);
  int n = sqlite3_column_bytes(stmt_, column);
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path,
                                             const std::vector<std::string>& migrations) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    absl::Status st = Error(raw, rc, absl::StrCat("open ", path));
    sqlite3_close(raw);
    return st;
  }
  std::unique_ptr<Db> db(new Db(raw));
  sqlite3_busy_timeout(raw, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON"}) {
    if (absl::Status st = db->Exec(pragma); !st.ok()) {
      return st;
    }
  }
  absl::StatusOr<Statement> version = db->Prepare("PRAGMA user_version");
  if (!version.ok()) {
    return version.status();
  }
  absl::StatusOr<bool> row = version->Step();
  if (!row.ok()) {
    return row.status();
  }
  int64_t current = version->Int(0);
  if (current > static_cast<int64_t>(migrations.size())) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": schema version ", current, " is newer than this program (",
                     migrations.size(), ")"));
  }
  for (size_t i = static_cast<size_t>(current); i < migrations.size(); ++i) {
    absl::Status st = db->Transaction([&]() -> absl::Status {
      if (absl::Status s = db->Exec(migrations[i]); !s.ok()) {
        return s;
      }
      return db->Exec(absl::StrCat("PRAGMA user_version=", i + 1));
    });
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat(path, ": migration ", i + 1, ": ", st.message()));
    }
  }
  return db;
}

Db::~Db() { sqlite3_close_v2(db_); }

absl::Status Db::Exec(absl::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      return absl::UnavailableError(absl::StrCat("sqlite: ", msg));
    }
    return absl::InternalError(absl::StrCat("sqlite: ", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statement> Db::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return Error(db_, rc, absl::StrCat("prepare \"", sql, "\""));
  }
  return Statement(db_, stmt);
}

absl::Status Db::Transaction(const std::function<absl::Status()>& body) {
  if (absl::Status st = Exec("BEGIN IMMEDIATE"); !st.ok()) {
    return st;
  }
  absl::Status st = body();
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  if (absl::Status c = Exec("COMMIT"); !c.ok()) {
    (void)Exec("ROLLBACK");
    return c;
  }
  return absl::OkStatus();
}

absl::Status Db::VolatileTransaction(const std::function<absl::Status()>& body) {
  if (absl::Status st = Exec("PRAGMA synchronous=NORMAL"); !st.ok()) {
    return st;
  }
  absl::Status st = Transaction(body);
  if (absl::Status restore = Exec("PRAGMA synchronous=FULL"); !restore.ok()) {
    // Every later commit would skip its fsync: a broken invariant, not an error to report.
    std::fprintf(stderr, "sqlite: cannot restore synchronous=FULL: %s\n",
                 restore.ToString().c_str());
    std::abort();
  }
  return st;
}

int64_t Db::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Db::Changes() const { return sqlite3_changes(db_); }

}  // namespace berth::sqlite
