// TaskManager's calls on an existing task (task_manager.cc has create, the watchers and
// recovery).

#include <utility>

#include "absl/strings/str_cat.h"
#include "containerd/events/task.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "services/execd/task_manager.h"

namespace berth::execd {
namespace {

namespace ev = ::containerd::events;

// A shim that no longer answers, for a process whose exit is not known: how long a read call
// waits for it.
constexpr absl::Duration kShimCallTimeout = absl::Seconds(5);

}  // namespace

absl::StatusOr<pid_t> TaskManager::Start(const Context& ctx, const std::string& id,
                                         const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  if (exec_id.empty()) {
    absl::Time began = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      task->starting = true;
    }
    absl::StatusOr<pid_t> pid = task->shim->Start(ctx);
    if (pid.ok()) {
      if (start_latency_ != nullptr) {
        start_latency_->Observe(absl::ToDoubleSeconds(absl::Now() - began));
      }
      ev::TaskStart event;
      event.set_container_id(id);
      event.set_pid(*pid);
      Publish(ctx.ns, "/tasks/start", event);
    }
    {
      absl::MutexLock lock(&mu_);
      task->starting = false;
      if (pid.ok() && task->status == "created") {
        task->status = "running";
      }
    }
    RefreshGauges();
    return pid;
  }
  ExecProcess request;
  std::string spec_path;
  {
    absl::MutexLock lock(&mu_);
    auto it = task->execs.find(exec_id);
    if (it == task->execs.end()) {
      return absl::NotFoundError(absl::StrCat("process ", exec_id, " of task ", id, ": not found"));
    }
    if (it->second.pid != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", exec_id, " of task ", id, ": already started"));
    }
    request = it->second.request;
    spec_path = it->second.spec_path;
  }
  BERTH_ASSIGN_OR_RETURN(
      pid_t pid, task->shim->Exec(ctx, exec_id, spec_path, request.terminal, request.stdin_path,
                                  request.stdout_path, request.stderr_path));
  records_.SetExecPid(ctx.ns, id, exec_id, pid).IgnoreError();  // else Reattach asks the shim
  {
    absl::MutexLock lock(&mu_);
    task->execs[exec_id].pid = pid;
    StartExecWatcher(task, exec_id);
  }
  ev::TaskExecStarted event;
  event.set_container_id(id);
  event.set_exec_id(exec_id);
  event.set_pid(pid);
  Publish(ctx.ns, "/tasks/exec-started", event);
  return pid;
}

absl::StatusOr<ProcessExit> TaskManager::Wait(const Context& ctx, const std::string& id,
                                              const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id, /*even_unresponsive=*/true));
  if (!exec_id.empty()) {
    // containerd's clients wait on an exec before they start it: a Wait on an exec waits for
    // its exit through its start, as the watcher learns and publishes it (also across a
    // restart), or NotFound once it is deleted.
    absl::MutexLock lock(&mu_);
    if (task->execs.count(exec_id) == 0) {
      return absl::NotFoundError(absl::StrCat("process ", exec_id, " of task ", id, ": not found"));
    }
    auto exited_or_gone = [&task, &exec_id]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      auto it = task->execs.find(exec_id);
      return it == task->execs.end() || it->second.exit.has_value();
    };
    while (!mu_.AwaitWithTimeout(absl::Condition(&exited_or_gone), absl::Milliseconds(200))) {
      BERTH_RETURN_IF_ERROR(ctx.Alive());
    }
    auto it = task->execs.find(exec_id);
    if (it == task->execs.end()) {
      return absl::NotFoundError(
          absl::StrCat("process ", exec_id, " of task ", id, ": deleted before it exited"));
    }
    return *it->second.exit;
  }
  // The init process's exit is the watcher's to learn, publish and record; Wait answers after
  // that, so a caller that crashes execd next cannot cause a lost or repeated /tasks/exit.
  absl::MutexLock lock(&mu_);
  auto known = [&task]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return task->exit.has_value(); };
  while (!mu_.AwaitWithTimeout(absl::Condition(&known), absl::Milliseconds(200))) {
    BERTH_RETURN_IF_ERROR(ctx.Alive());
  }
  return *task->exit;
}

absl::Status TaskManager::Kill(const Context& ctx, const std::string& id,
                               const std::string& exec_id, int signal, bool all) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  {
    absl::MutexLock lock(&mu_);
    if (exec_id.empty() && task->exit.has_value()) {
      return absl::NotFoundError(absl::StrCat("task ", id, ": process already finished"));
    }
  }
  return task->shim->Kill(ctx, exec_id, signal, all);
}

absl::StatusOr<Deleted> TaskManager::Delete(const Context& ctx, const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  absl::StatusOr<ProcessState> state = task->shim->State(ctx.WithTimeout(kShimCallTimeout), "");
  if (state.ok() && (state->status == "running" || state->status == "paused")) {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", id, ": must be stopped before deletion: ", state->status));
  }
  if (state.ok()) {
    {
      absl::MutexLock lock(&mu_);
      task->deleting = true;
    }
    absl::Status deleted = task->shim->Delete(ctx, "");
    if (!deleted.ok()) {
      absl::MutexLock lock(&mu_);
      task->deleting = false;
      return deleted;
    }
  }
  // The exit: the shim's answer, the watcher's, or the shim's record; a task deleted before it
  // ran reports what the runtime's delete --force left (SIGKILL).
  ProcessExit exit{137, absl::Now()};
  if (state.ok() && state->status == "stopped") {
    exit = state->exit;
  }
  if (std::optional<ProcessExit> recorded = ReadExitRecord(task->shim->state_dir(), "")) {
    exit = *recorded;
  }
  {
    absl::MutexLock lock(&mu_);
    if (task->exit.has_value()) {
      exit = *task->exit;
    }
  }
  OnExit(*task, exit);  // publishes /tasks/exit if the watcher has not
  // The shim's delete ran the runtime's `delete --force` and answered only once it succeeded:
  // a second one would cost another runtime start on every `run --rm`.
  BERTH_RETURN_IF_ERROR(CleanUp(task->record, /*runtime_deleted=*/state.ok()));
  {
    absl::MutexLock lock(&mu_);
    tasks_.erase(absl::StrCat(ctx.ns, "/", id));
  }
  ev::TaskDelete event;
  event.set_container_id(id);
  event.set_id(id);
  event.set_pid(static_cast<uint32_t>(task->record.pid));
  event.set_exit_status(exit.status);
  SetTimestamp(event.mutable_exited_at(), exit.exited_at);
  Publish(ctx.ns, "/tasks/delete", event);
  RefreshGauges();
  return Deleted{static_cast<pid_t>(task->record.pid), exit};
}

absl::StatusOr<Deleted> TaskManager::DeleteProcess(const Context& ctx, const std::string& id,
                                                   const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  ExecState exec;
  {
    absl::MutexLock lock(&mu_);
    auto it = task->execs.find(exec_id);
    if (it == task->execs.end()) {
      return absl::NotFoundError(absl::StrCat("process ", exec_id, " of task ", id, ": not found"));
    }
    exec = it->second;
  }
  ProcessExit exit{0, absl::Now()};
  if (exec.pid != 0) {
    absl::StatusOr<ProcessState> state = task->shim->State(ctx, exec_id);
    BERTH_RETURN_IF_ERROR(state.status());
    if (state->status != "stopped") {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", exec_id, " of task ", id, ": must be stopped before deletion"));
    }
    exit = state->exit;
    {
      absl::MutexLock lock(&mu_);  // the exit event before the delete's, once
      auto it = task->execs.find(exec_id);
      if (it != task->execs.end() && !it->second.exit_published) {
        PublishExit(*task, exec_id, exec.pid, exit);
        it->second.exit_published = true;
      }
    }
    BERTH_RETURN_IF_ERROR(task->shim->Delete(ctx, exec_id));
  }
  ::unlink(exec.spec_path.c_str());
  BERTH_RETURN_IF_ERROR(records_.DeleteExec(ctx.ns, id, exec_id));
  {
    absl::MutexLock lock(&mu_);
    task->execs.erase(exec_id);
  }
  ev::TaskDelete event;
  event.set_container_id(id);
  event.set_id(exec_id);
  event.set_pid(static_cast<uint32_t>(exec.pid));
  event.set_exit_status(exit.status);
  SetTimestamp(event.mutable_exited_at(), exit.exited_at);
  Publish(ctx.ns, "/tasks/delete", event);
  return Deleted{exec.pid, exit};
}

absl::StatusOr<ProcessProto> TaskManager::Get(const Context& ctx, const std::string& id,
                                              const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id, /*even_unresponsive=*/true));
  ProcessProto p;
  p.set_container_id(id);
  p.set_id(exec_id.empty() ? id : exec_id);
  {
    absl::MutexLock lock(&mu_);
    const TaskRecord& r = task->record;
    p.set_pid(static_cast<uint32_t>(r.pid));
    p.set_stdin(r.stdin_path);
    p.set_stdout(r.stdout_path);
    p.set_stderr(r.stderr_path);
    p.set_terminal(r.terminal);
    p.set_status(StatusOf(task->status));
    if (!exec_id.empty()) {
      auto it = task->execs.find(exec_id);
      if (it == task->execs.end()) {
        return absl::NotFoundError(
            absl::StrCat("process ", exec_id, " of task ", id, ": not found"));
      }
      p.set_pid(static_cast<uint32_t>(it->second.pid));
      p.set_stdin(it->second.request.stdin_path);
      p.set_stdout(it->second.request.stdout_path);
      p.set_stderr(it->second.request.stderr_path);
      p.set_terminal(it->second.request.terminal);
      p.set_status(StatusOf(it->second.pid == 0 ? "created" : "running"));
      if (it->second.exit.has_value()) {
        p.set_status(StatusOf("stopped"));
        p.set_exit_status(it->second.exit->status);
        SetTimestamp(p.mutable_exited_at(), it->second.exit->exited_at);
        return p;
      }
    } else if (task->exit.has_value()) {
      p.set_exit_status(task->exit->status);
      SetTimestamp(p.mutable_exited_at(), task->exit->exited_at);
      return p;
    }
    if (task->shim == nullptr) {
      return p;
    }
    if (task->unresponsive) {
      p.set_status(StatusOf("unknown"));
      return p;
    }
  }
  absl::StatusOr<ProcessState> state =
      task->shim->State(ctx.WithTimeout(kShimCallTimeout), exec_id);
  if (state.ok()) {
    p.set_status(StatusOf(state->status));
    if (state->status == "stopped") {
      p.set_exit_status(state->exit.status);
      SetTimestamp(p.mutable_exited_at(), state->exit.exited_at);
    }
  }
  return p;
}

std::vector<std::string> TaskManager::TaskIds(const Context& ctx) {
  std::vector<std::string> ids;
  absl::MutexLock lock(&mu_);
  const std::string prefix = ctx.ns + "/";
  for (const auto& [key, task] : tasks_) {
    if (key.rfind(prefix, 0) == 0 && task->shim != nullptr) {
      ids.push_back(task->record.id);
    }
  }
  return ids;
}

absl::StatusOr<std::vector<ProcessProto>> TaskManager::List(const Context& ctx) {
  std::vector<ProcessProto> list;
  for (const std::string& id : TaskIds(ctx)) {
    absl::StatusOr<ProcessProto> p = Get(ctx, id, "");
    if (p.ok()) {
      list.push_back(*std::move(p));
    }
  }
  return list;
}

absl::Status TaskManager::Exec(const Context& ctx, const ExecProcess& request) {
  BERTH_RETURN_IF_ERROR(ValidateIdentifier("exec id", request.exec_id));
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, request.id));
  ExecState exec;
  exec.request = request;
  exec.spec_path = absl::StrCat(task->dir, "/exec-", request.exec_id, ".json");
  {
    absl::MutexLock lock(&mu_);
    if (task->exit.has_value() || task->shim == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("task ", request.id, ": not running"));
    }
    if (task->execs.count(request.exec_id) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("process ", request.exec_id, " of task ", request.id, ": already exists"));
    }
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(exec.spec_path, request.spec_json, 0600));
    ExecRecord record;
    record.ns = ctx.ns;
    record.id = request.id;
    record.exec_id = request.exec_id;
    record.stdin_path = request.stdin_path;
    record.stdout_path = request.stdout_path;
    record.stderr_path = request.stderr_path;
    record.terminal = request.terminal;
    BERTH_RETURN_IF_ERROR(records_.InsertExec(record));
    task->execs[request.exec_id] = exec;
  }
  ev::TaskExecAdded event;
  event.set_container_id(request.id);
  event.set_exec_id(request.exec_id);
  Publish(ctx.ns, "/tasks/exec-added", event);
  return absl::OkStatus();
}

absl::Status TaskManager::ResizePty(const Context& ctx, const std::string& id,
                                    const std::string& exec_id, uint32_t width, uint32_t height) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  return task->shim->Resize(ctx, exec_id, width, height);
}

absl::Status TaskManager::CloseIO(const Context& ctx, const std::string& id,
                                  const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  return task->shim->CloseStdin(ctx, exec_id);
}

absl::Status TaskManager::Pause(const Context& ctx, const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  BERTH_RETURN_IF_ERROR(task->shim->Pause(ctx));
  ev::TaskPaused event;
  event.set_container_id(id);
  Announce(ctx.ns, *task, "paused", "/tasks/paused", event);
  return absl::OkStatus();
}

absl::Status TaskManager::Resume(const Context& ctx, const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  BERTH_RETURN_IF_ERROR(task->shim->Resume(ctx));
  ev::TaskResumed event;
  event.set_container_id(id);
  Announce(ctx.ns, *task, "running", "/tasks/resumed", event);
  return absl::OkStatus();
}

void TaskManager::Announce(const std::string& ns, Task& task, const std::string& status,
                           absl::string_view topic, const google::protobuf::Message& event) {
  {
    absl::MutexLock lock(&mu_);
    task.status = status;
  }
  Publish(ns, topic, event);
  RefreshGauges();
}

absl::StatusOr<std::vector<uint32_t>> TaskManager::ListPids(const Context& ctx,
                                                            const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  return task->shim->Pids(ctx);
}

absl::Status TaskManager::Update(const Context& ctx, const std::string& id,
                                 const std::string& resources_json) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Task> task, Find(ctx, id));
  std::string path = task->dir + "/resources.json";
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(path, resources_json, 0600));
  return task->shim->Update(ctx, path);
}

}  // namespace berth::execd
