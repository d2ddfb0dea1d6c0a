#include "lib/events/outbox.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"

namespace berth::events {
namespace {

// Append-only (sqlite.h): AUTOINCREMENT so a row id, and with it a Msg-Id, is never reused even
// after the outbox has been emptied.
const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      "CREATE TABLE outbox ("
      "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
      "  subject TEXT NOT NULL,"
      "  payload BLOB NOT NULL,"
      "  created_unix_nanos INTEGER NOT NULL);"
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
      // Append's keys: events stored once per key (Publisher::PublishOnce).
      "CREATE TABLE once_keys (key TEXT PRIMARY KEY) WITHOUT ROWID;",
  };
  return *migrations;
}

// Reads the publisher id from the outbox, creating it on first use.
absl::StatusOr<std::string> LoadPublisherId(sqlite::Db& db) {
  std::string id;
  BERTH_RETURN_IF_ERROR(db.Transaction([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement select,
                           db.Prepare("SELECT value FROM meta WHERE key = 'publisher_id'"));
    BERTH_ASSIGN_OR_RETURN(bool found, select.Step());
    if (found) {
      id = select.Text(0);
      return absl::OkStatus();
    }
    id = RandomHex(12);
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement insert,
                           db.Prepare("INSERT INTO meta (key, value) VALUES ('publisher_id', ?)"));
    return insert.Bind(1, id).Run();
  }));
  return id;
}

absl::StatusOr<int64_t> CountRows(sqlite::Db& db) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement count, db.Prepare("SELECT COUNT(*) FROM outbox"));
  BERTH_RETURN_IF_ERROR(count.Step().status());
  return count.Int(0);
}

}  // namespace

struct Outbox::Waiter {
  std::vector<std::pair<std::string, std::string>> rows;  // subject, payload
  int64_t nanos = 0;
  std::string key;
  absl::Status status;
};

absl::StatusOr<std::unique_ptr<Outbox>> Outbox::Open(const std::string& path,
                                                     PendingObserver on_pending) {
  absl::StatusOr<std::unique_ptr<sqlite::Db>> db = sqlite::Db::Open(path, Migrations());
  if (!db.ok()) {
    return absl::Status(db.status().code(),
                        absl::StrCat("events outbox ", path, ": ", db.status().message()));
  }
  BERTH_ASSIGN_OR_RETURN(std::string id, LoadPublisherId(**db));
  BERTH_ASSIGN_OR_RETURN(int64_t pending, CountRows(**db));
  return std::unique_ptr<Outbox>(
      new Outbox(std::move(*db), std::move(id), pending, std::move(on_pending)));
}

Outbox::Outbox(std::unique_ptr<sqlite::Db> db, std::string publisher_id, int64_t pending,
               PendingObserver on_pending)
    : publisher_id_(std::move(publisher_id)), on_pending_(std::move(on_pending)),
      db_(std::move(db)) {
  absl::MutexLock lock(&mu_);
  SetPendingLocked(pending);
}

void Outbox::SetPendingLocked(int64_t pending) {
  pending_ = pending;
  if (on_pending_ != nullptr) {
    on_pending_(pending);
  }
}

int64_t Outbox::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_;
}

int64_t Outbox::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

bool Outbox::WaitForEmpty(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(+[](int64_t* pending) { return *pending == 0; }, &pending_), timeout);
}

// Every Append queues its row; the one at the front commits everything queued so far, then
// hands the front to the next. Appends that arrive during a commit form the next group, so an
// fsync is shared by as many events as arrive while it runs, and no Append returns before its
// row is durable.
absl::Status Outbox::Append(std::string subject, std::string payload, int64_t unix_nanos,
                           std::string key) {
  Waiter waiter;
  waiter.rows.emplace_back(std::move(subject), std::move(payload));
  waiter.nanos = unix_nanos;
  waiter.key = std::move(key);
  return Enqueue(waiter);
}

absl::Status Outbox::AppendAll(std::vector<std::pair<std::string, std::string>> rows,
                               int64_t unix_nanos) {
  if (rows.empty()) {
    return absl::OkStatus();
  }
  Waiter waiter;
  waiter.rows = std::move(rows);
  waiter.nanos = unix_nanos;
  return Enqueue(waiter);
}

absl::Status Outbox::Enqueue(Waiter& waiter) {
  writers_.Run(&waiter, [this](const std::vector<Waiter*>& group) {
    absl::Status st = Commit(group);
    for (Waiter* w : group) {
      w->status = st;
    }
  });
  return waiter.status;
}

absl::Status Outbox::Commit(const std::vector<Waiter*>& group) {
  absl::MutexLock lock(&mu_);
  int64_t stored = 0;
  absl::Status st = db_->Transaction([&]() -> absl::Status {
    stored = 0;
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement insert,
        db_->Prepare("INSERT INTO outbox (subject, payload, created_unix_nanos) VALUES (?, ?, ?)"));
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement remember,
                           db_->Prepare("INSERT OR IGNORE INTO once_keys (key) VALUES (?)"));
    for (Waiter* w : group) {
      if (!w->key.empty()) {
        BERTH_RETURN_IF_ERROR(remember.Bind(1, w->key).Run());
        remember.Reset();
        if (db_->Changes() == 0) {
          continue;  // stored once already
        }
      }
      for (const auto& [subject, payload] : w->rows) {
        BERTH_RETURN_IF_ERROR(insert.Bind(1, subject).BindBlob(2, payload).Bind(3, w->nanos).Run());
        insert.Reset();
        ++stored;
      }
    }
    return absl::OkStatus();
  });
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("events outbox: ", st.message()));
  }
  SetPendingLocked(pending_ + stored);
  return absl::OkStatus();
}

absl::Status Outbox::Forget(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement forget,
                         db_->Prepare("DELETE FROM once_keys WHERE key = ?"));
  absl::Status st = forget.Bind(1, key).Run();
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("events outbox: ", st.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OutboxRow>> Outbox::ReadAfter(int64_t after_id, int64_t limit) {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_->Prepare("SELECT id, subject, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?"));
  select.Bind(1, after_id).Bind(2, limit);
  std::vector<OutboxRow> rows;
  BERTH_RETURN_IF_ERROR(select.ForEachRow([&] {
    rows.push_back(OutboxRow{select.Int(0), select.Text(1), select.Text(2)});
    return absl::OkStatus();
  }));
  return rows;
}

absl::Status Outbox::DeleteThrough(int64_t last_id, int64_t rows, int64_t dropped) {
  absl::MutexLock lock(&mu_);
  // Committed with synchronous=NORMAL; the next insert's fsync (synchronous=FULL: the whole
  // WAL) makes it durable too.
  BERTH_RETURN_IF_ERROR(db_->Exec("PRAGMA synchronous=NORMAL"));
  absl::StatusOr<sqlite::Statement> del = db_->Prepare("DELETE FROM outbox WHERE id <= ?");
  absl::Status st = del.ok() ? del->Bind(1, last_id).Run() : del.status();
  absl::Status restore = db_->Exec("PRAGMA synchronous=FULL");
  if (!restore.ok()) {
    // Inserts must not be committed without an fsync: a broken invariant, not an outage.
    BERTH_LOG(Error) << "events outbox: cannot restore synchronous=FULL: " << restore;
    std::abort();
  }
  BERTH_RETURN_IF_ERROR(st);
  delivered_ += rows - dropped;
  SetPendingLocked(pending_ - rows);
  return absl::OkStatus();
}

}  // namespace berth::events
