#include "services/execd/task_records.h"

#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"

namespace berth::execd {
namespace {

// Append-only (lib/sqlite's migrations).
const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      R"sql(
CREATE TABLE tasks (
  ns TEXT NOT NULL,
  id TEXT NOT NULL,
  runtime TEXT NOT NULL,
  stdin TEXT NOT NULL,
  stdout TEXT NOT NULL,
  stderr TEXT NOT NULL,
  terminal INTEGER NOT NULL,
  mounted INTEGER NOT NULL,
  pid INTEGER NOT NULL DEFAULT 0,
  exit_published INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ns, id)
) WITHOUT ROWID;
)sql",
      R"sql(
CREATE TABLE execs (
  ns TEXT NOT NULL,
  id TEXT NOT NULL,
  exec_id TEXT NOT NULL,
  stdin TEXT NOT NULL,
  stdout TEXT NOT NULL,
  stderr TEXT NOT NULL,
  terminal INTEGER NOT NULL,
  pid INTEGER NOT NULL DEFAULT 0,
  exit_published INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ns, id, exec_id)
) WITHOUT ROWID;
)sql",
  };
  return *migrations;
}

// Every row of `sql`, whose first columns are ns and id, each read by `read`.
template <typename Record, typename Read>
absl::StatusOr<std::vector<Record>> SelectAll(sqlite::Db& db, const char* sql, Read read) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st, db.Prepare(sql));
  std::vector<Record> records;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    Record r;
    r.ns = st.Text(0);
    r.id = st.Text(1);
    read(st, r);
    records.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return records;
}

// The stdin, stdout, stderr and terminal columns from `first` on.
template <typename Record>
void ReadStdio(const sqlite::Statement& st, int first, Record& r) {
  r.stdin_path = st.Text(first);
  r.stdout_path = st.Text(first + 1);
  r.stderr_path = st.Text(first + 2);
  r.terminal = st.Int(first + 3) != 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TaskRecords>> TaskRecords::Open(const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Db> db, sqlite::Db::Open(path, Migrations()));
  return std::unique_ptr<TaskRecords>(new TaskRecords(std::move(db)));
}

absl::Status TaskRecords::Insert(const TaskRecord& r) {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement exists,
                         db_->Prepare("SELECT 1 FROM tasks WHERE ns = ? AND id = ?"));
  exists.Bind(1, r.ns).Bind(2, r.id);
  BERTH_ASSIGN_OR_RETURN(bool found, exists.Step());
  if (found) {
    return absl::AlreadyExistsError(absl::StrCat("task ", r.id, ": already exists"));
  }
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare("INSERT INTO tasks (ns, id, runtime, stdin, stdout, stderr, terminal, mounted, "
                   "pid, exit_published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  insert.Bind(1, r.ns).Bind(2, r.id).Bind(3, r.runtime).Bind(4, r.stdin_path);
  insert.Bind(5, r.stdout_path).Bind(6, r.stderr_path).Bind(7, int64_t{r.terminal});
  insert.Bind(8, int64_t{r.mounted}).Bind(9, r.pid).Bind(10, int64_t{r.exit_published});
  return RunVolatileLocked(insert);
}

absl::Status TaskRecords::RunVolatileLocked(sqlite::Statement& st) {
  BERTH_RETURN_IF_ERROR(db_->Exec("PRAGMA synchronous=NORMAL"));
  absl::Status run = st.Run();
  absl::Status restore = db_->Exec("PRAGMA synchronous=FULL");
  if (!restore.ok()) {
    // The exit_published flag must not be committed without an fsync: a broken invariant.
    BERTH_LOG(Error) << "tasks.db: cannot restore synchronous=FULL: " << restore;
    std::abort();
  }
  return run;
}

absl::Status TaskRecords::Exec(const std::string& sql, const std::string& ns,
                               const std::string& id, int64_t value, const std::string& exec_id,
                               bool durable) {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, value).Bind(2, ns).Bind(3, id);
  if (!exec_id.empty()) {
    st.Bind(4, exec_id);
  }
  return durable ? st.Run() : RunVolatileLocked(st);
}

absl::Status TaskRecords::SetPid(const std::string& ns, const std::string& id, int64_t pid) {
  return Exec("UPDATE tasks SET pid = ?1 WHERE ns = ?2 AND id = ?3", ns, id, pid, "",
              /*durable=*/false);
}

absl::Status TaskRecords::MarkExitPublished(const std::string& ns, const std::string& id) {
  return Exec("UPDATE tasks SET exit_published = ?1 WHERE ns = ?2 AND id = ?3", ns, id, 1);
}

absl::Status TaskRecords::Delete(const std::string& ns, const std::string& id) {
  absl::MutexLock lock(&mu_);
  return db_->Transaction([&]() -> absl::Status {
    for (const char* sql : {"DELETE FROM execs WHERE ns = ?1 AND id = ?2",
                            "DELETE FROM tasks WHERE ns = ?1 AND id = ?2"}) {
      BERTH_ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
      BERTH_RETURN_IF_ERROR(st.Bind(1, ns).Bind(2, id).Run());
    }
    return absl::OkStatus();
  });
}

absl::Status TaskRecords::InsertExec(const ExecRecord& r) {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement exists,
      db_->Prepare("SELECT 1 FROM execs WHERE ns = ? AND id = ? AND exec_id = ?"));
  exists.Bind(1, r.ns).Bind(2, r.id).Bind(3, r.exec_id);
  BERTH_ASSIGN_OR_RETURN(bool found, exists.Step());
  if (found) {
    return absl::AlreadyExistsError(
        absl::StrCat("process ", r.exec_id, " of task ", r.id, ": already exists"));
  }
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare("INSERT INTO execs (ns, id, exec_id, stdin, stdout, stderr, terminal, pid, "
                   "exit_published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  insert.Bind(1, r.ns).Bind(2, r.id).Bind(3, r.exec_id).Bind(4, r.stdin_path);
  insert.Bind(5, r.stdout_path).Bind(6, r.stderr_path).Bind(7, int64_t{r.terminal});
  insert.Bind(8, r.pid).Bind(9, int64_t{r.exit_published});
  return insert.Run();
}

absl::Status TaskRecords::SetExecPid(const std::string& ns, const std::string& id,
                                     const std::string& exec_id, int64_t pid) {
  return Exec("UPDATE execs SET pid = ?1 WHERE ns = ?2 AND id = ?3 AND exec_id = ?4", ns, id,
              pid, exec_id);
}

absl::Status TaskRecords::MarkExecExitPublished(const std::string& ns, const std::string& id,
                                                const std::string& exec_id) {
  return Exec("UPDATE execs SET exit_published = ?1 WHERE ns = ?2 AND id = ?3 AND exec_id = ?4",
              ns, id, 1, exec_id);
}

absl::Status TaskRecords::DeleteExec(const std::string& ns, const std::string& id,
                                     const std::string& exec_id) {
  return Exec("DELETE FROM execs WHERE ?1 = ?1 AND ns = ?2 AND id = ?3 AND exec_id = ?4", ns, id,
              0, exec_id);
}

absl::StatusOr<std::vector<ExecRecord>> TaskRecords::ListExecs() {
  absl::MutexLock lock(&mu_);
  return SelectAll<ExecRecord>(
      *db_,
      "SELECT ns, id, exec_id, stdin, stdout, stderr, terminal, pid, exit_published FROM execs "
      "ORDER BY ns, id, exec_id",
      [](const sqlite::Statement& st, ExecRecord& r) {
        r.exec_id = st.Text(2);
        ReadStdio(st, 3, r);
        r.pid = st.Int(7);
        r.exit_published = st.Int(8) != 0;
      });
}

absl::StatusOr<std::vector<TaskRecord>> TaskRecords::List() {
  absl::MutexLock lock(&mu_);
  return SelectAll<TaskRecord>(
      *db_,
      "SELECT ns, id, runtime, stdin, stdout, stderr, terminal, mounted, pid, exit_published "
      "FROM tasks ORDER BY ns, id",
      [](const sqlite::Statement& st, TaskRecord& r) {
        r.runtime = st.Text(2);
        ReadStdio(st, 3, r);
        r.mounted = st.Int(7) != 0;
        r.pid = st.Int(8);
        r.exit_published = st.Int(9) != 0;
      });
}

}  // namespace berth::execd
