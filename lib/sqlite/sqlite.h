#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::sqlite {

class Db;

// A prepared statement. Bind* indexes start at 1, as in sqlite. Not thread-safe; use it from
// the thread that holds the Db for the call.
class Statement {
 public:
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;

  Statement& Bind(int index, absl::string_view text);
  Statement& Bind(int index, int64_t value);
  Statement& BindBlob(int index, absl::string_view bytes);
  Statement& BindNull(int index);

  // true while there is a row to read; false when done.
  absl::StatusOr<bool> Step();
  // Step() to the end, for statements that return no rows.
  absl::Status Run();
  // Makes the statement ready to run again with new bindings (sqlite3_reset).
  Statement& Reset();
  // Step() to the end, calling `row` on each row (read it with Text, Int, ...). Stops at the
  // first error, Step's or `row`'s, and returns it.
  absl::Status ForEachRow(const std::function<absl::Status()>& row);

  std::string Text(int column) const;
  int64_t Int(int column) const;
  bool IsNull(int column) const;

 private:
  friend class Db;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// One sqlite database in WAL mode (synchronous=FULL, foreign keys on, busy timeout set). Not
// thread-safe: callers serialise access (each store holds a mutex around its Db).
class Db {
 public:
  // Opens or creates `path` and brings its schema up to date: migrations[i] runs (in one
  // transaction) when PRAGMA user_version <= i, so appending to the list is how a schema evolves.
  // A database newer than the code (user_version > migrations.size()) is FailedPrecondition.
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path,
                                                  const std::vector<std::string>& migrations);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<Statement> Prepare(absl::string_view sql);

  // Runs `body` inside BEGIN IMMEDIATE .. COMMIT; rolls back when body returns an error (which
  // is then returned). Not re-entrant.
  absl::Status Transaction(const std::function<absl::Status()>& body);
  // Transaction whose COMMIT does not fsync (synchronous=NORMAL for it, FULL again after): it
  // survives the process being killed, not a power cut before the next fsync'd commit (which
  // makes it durable too: the WAL is synced in order). For rows that are made again, or whose
  // loss leaves only what start-up recovery removes.
  absl::Status VolatileTransaction(const std::function<absl::Status()>& body);

  int64_t LastInsertRowId() const;
  int Changes() const;
  sqlite3* raw() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// An error for a failed sqlite call, with sqlite's own message.
absl::Status Error(sqlite3* db, int rc, absl::string_view what);

}  // namespace berth::sqlite
