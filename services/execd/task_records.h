#pragma once

// execd's durable task records (<root>/tasks.db): which tasks exist, where their stdio goes,
// whether their rootfs was mounted by execd, and whether their /tasks/exit event has been
// published. A record is written before the shim starts (pid 0 until it answers), so a crash
// mid-create leaves a record that start-up cleans away. Each exec'd process has a record too
// (from its Exec on, pid 0 until it starts), so a restarted execd knows it again. Thread-safe.
//
// Durability: Insert and SetPid commit without an fsync (sqlite's WAL keeps them across a crash
// of execd; a power loss may roll them back, and takes the shim and container with it);
// MarkExitPublished and Delete fsync, and with them everything committed before.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lib/sqlite/sqlite.h"

namespace berth::execd {

struct TaskRecord {
  std::string ns;
  std::string id;
  std::string runtime;  // the OCI runtime binary
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
  bool mounted = false;  // execd mounted the request's rootfs under the bundle
  int64_t pid = 0;       // 0: the shim has not answered yet
  bool exit_published = false;
};

struct ExecRecord {
  std::string ns;
  std::string id;  // the task's
  std::string exec_id;
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
  int64_t pid = 0;  // 0: not started (as far as execd knows)
  bool exit_published = false;
};

class TaskRecords {
 public:
  static absl::StatusOr<std::unique_ptr<TaskRecords>> Open(const std::string& path);

  // AlreadyExists if (ns, id) has a record.
  absl::Status Insert(const TaskRecord& record);
  absl::Status SetPid(const std::string& ns, const std::string& id, int64_t pid);
  absl::Status MarkExitPublished(const std::string& ns, const std::string& id);
  // Deletes the task's record and its execs'.
  absl::Status Delete(const std::string& ns, const std::string& id);
  absl::StatusOr<std::vector<TaskRecord>> List();

  // AlreadyExists if (ns, id, exec_id) has a record.
  absl::Status InsertExec(const ExecRecord& record);
  absl::Status SetExecPid(const std::string& ns, const std::string& id,
                          const std::string& exec_id, int64_t pid);
  absl::Status MarkExecExitPublished(const std::string& ns, const std::string& id,
                                     const std::string& exec_id);
  absl::Status DeleteExec(const std::string& ns, const std::string& id,
                          const std::string& exec_id);
  // Every exec record, by task and exec id.
  absl::StatusOr<std::vector<ExecRecord>> ListExecs();

 private:
  explicit TaskRecords(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}
  // Runs `sql` with ?1 = value, ?2 = ns, ?3 = id, ?4 = exec_id (when the sql names it).
  absl::Status Exec(const std::string& sql, const std::string& ns, const std::string& id,
                    int64_t value, const std::string& exec_id = "", bool durable = true);
  // Runs `st` committed with synchronous=NORMAL (no fsync), then restores FULL.
  absl::Status RunVolatileLocked(sqlite::Statement& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<sqlite::Db> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::execd
