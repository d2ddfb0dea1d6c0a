#include "services/execd/task_manager.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "containerd/events/task.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "nlohmann/json.hpp"

namespace berth::execd {
namespace {

namespace ev = ::containerd::events;

std::string Key(const std::string& ns, const std::string& id) { return absl::StrCat(ns, "/", id); }

// A binary named by path must exist; one by name must be found in PATH.
bool Executable(const std::string& binary) {
  if (binary.find('/') != std::string::npos) {
    return ::access(binary.c_str(), X_OK) == 0;
  }
  const char* path = ::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (::access(absl::StrCat(dir, "/", binary).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

// The outbox's key for the exit event of a process (PublishExit).
std::string ExitEventKey(const std::string& ns, const std::string& id, const std::string& exec_id,
                         int64_t pid) {
  return absl::StrCat("execd/tasks/exit/", ns, "/", id, "/", exec_id, "/", pid);
}

}  // namespace

TaskManager::TaskManager(containers::ContainerStore& store, TaskRecords& records,
                         TaskManagerOptions options)
    : store_(store),
      records_(records),
      options_(std::move(options)),
      mounter_(options_.mounter != nullptr ? *options_.mounter : mount::SystemMounter()) {
  if (options_.registry != nullptr) {
    by_state_ = &prometheus::BuildGauge()
                     .Name("berth_tasks")
                     .Help("Tasks (containers with a process) execd holds, by state")
                     .Register(*options_.registry);
    shims_alive_ = &prometheus::BuildGauge()
                        .Name("berth_shims_alive")
                        .Help("berth-shim processes execd is attached to")
                        .Register(*options_.registry)
                        .Add({});
    start_latency_ = &prometheus::BuildHistogram()
                          .Name("berth_task_start_seconds")
                          .Help("Time a task Start took (the runtime's start, through the shim)")
                          .Register(*options_.registry)
                          .Add({}, prometheus::Histogram::BucketBoundaries{
                                       0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5});
  }
  oom_ = std::make_unique<OomWatcher>([this](const std::string& key) { OnOom(key); });
}

void TaskManager::WatchOom(const TaskRecord& record) {
  if (absl::Status st = oom_->Add(Key(record.ns, record.id), static_cast<pid_t>(record.pid));
      !st.ok()) {
    BERTH_LOG(Warn) << "task " << record.ns << "/" << record.id << ": no OOM events: " << st;
  }
}

void TaskManager::OnOom(const std::string& key) {
  std::string ns, id;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(key);
    if (it == tasks_.end()) {
      return;
    }
    ns = it->second->record.ns;
    id = it->second->record.id;
  }
  ev::TaskOOM event;
  event.set_container_id(id);
  Publish(ns, "/tasks/oom", event);
}

TaskManager::~TaskManager() {
  stop_->Cancel();
  std::vector<std::thread> watchers;
  {
    absl::MutexLock lock(&mu_);
    watchers.swap(watchers_);
  }
  for (std::thread& t : watchers) {
    t.join();
  }
}

std::string TaskManager::TaskDir(const std::string& ns, const std::string& id) const {
  return absl::StrCat(options_.state_dir, "/tasks/", ns, "/", id);
}

std::string TaskManager::RuntimeRoot(const std::string& ns) const {
  return absl::StrCat(options_.state_dir, "/runc/", ns);
}

absl::StatusOr<std::string> TaskManager::RuntimeFor(const containers::Container& c,
                                                    const std::string& runtime_path) const {
  // containerd's runtime names (io.containerd.runc.v2, ...) mean the daemon's runtime; any other
  // name is the binary itself, by path or in PATH.
  std::string binary = options_.default_runtime;
  if (!runtime_path.empty()) {
    binary = runtime_path;
  } else if (!c.runtime.name.empty() && c.runtime.name.rfind("io.containerd.", 0) != 0) {
    binary = c.runtime.name;
  }
  if (!Executable(binary)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "OCI runtime ", binary, ": not found or not executable (execd's --runtime, or the "
        "container's runtime name)"));
  }
  return binary;
}

absl::StatusOr<std::shared_ptr<TaskManager::Task>> TaskManager::Find(const Context& ctx,
                                                                     const std::string& id,
                                                                     bool even_unresponsive) {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(Key(ctx.ns, id));
  if (it == tasks_.end()) {
    return absl::NotFoundError(absl::StrCat("task ", id, ": not found"));
  }
  if (it->second->shim == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("task ", id, ": still being created"));
  }
  if (it->second->unresponsive && !even_unresponsive) {
    return absl::UnavailableError(absl::StrCat(
        "task ", id, ": its shim has not answered since execd restarted (stopped or hung; "
        "asked again every ", absl::FormatDuration(options_.reattach_timeout), ")"));
  }
  return it->second;
}

absl::StatusOr<pid_t> TaskManager::Create(const Context& ctx, const CreateTask& request) {
  BERTH_ASSIGN_OR_RETURN(containers::Container container, store_.Get(ctx, request.id));
  BERTH_ASSIGN_OR_RETURN(std::string runtime, RuntimeFor(container, request.runtime_path));
  if (nlohmann::json::parse(container.spec.value, nullptr, false).is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("container ", request.id, ": its spec is not an OCI runtime spec (JSON)"));
  }
  TaskRecord record;
  record.ns = ctx.ns;
  record.id = request.id;
  record.runtime = runtime;
  record.stdin_path = request.stdin_path;
  record.stdout_path = request.stdout_path;
  record.stderr_path = request.stderr_path;
  record.terminal = request.terminal;
  record.mounted = !request.rootfs.empty();
  {
    absl::MutexLock lock(&mu_);
    if (tasks_.count(Key(ctx.ns, request.id)) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("task ", request.id, ": already exists"));
    }
    // Recorded first: a crash from here on leaves a record that Recover cleans up.
    BERTH_RETURN_IF_ERROR(records_.Insert(record));
    auto task = std::make_shared<Task>();
    task->record = record;
    task->dir = TaskDir(ctx.ns, request.id);
    task->status = "creating";
    tasks_[Key(ctx.ns, request.id)] = task;
  }
  const std::string dir = TaskDir(ctx.ns, request.id);
  absl::StatusOr<pid_t> pid = [&]() -> absl::StatusOr<pid_t> {
    BERTH_RETURN_IF_ERROR(MakeDirs(dir + "/rootfs", 0711));
    BERTH_RETURN_IF_ERROR(MakeDirs(dir + "/shim", 0700));
    BERTH_RETURN_IF_ERROR(MakeDirs(RuntimeRoot(ctx.ns), 0700));
    // The bundle is made again from the container record whenever it is lost (a crash before
    // the shim answered is cleaned up by Recover): no fsync on the way to the runtime.
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.json", container.spec.value, 0600,
                                          Durability::kVolatile));
    if (!request.rootfs.empty()) {
      BERTH_RETURN_IF_ERROR(mounter_.MountAll(request.rootfs, dir + "/rootfs"));
    }
    ShimLaunch launch;
    launch.shim_binary = options_.shim_binary;
    launch.id = request.id;
    launch.bundle = dir;
    launch.state_dir = dir + "/shim";
    launch.runtime = runtime;
    launch.runtime_root = RuntimeRoot(ctx.ns);
    launch.stdin_path = request.stdin_path;
    launch.stdout_path = request.stdout_path;
    launch.stderr_path = request.stderr_path;
    launch.terminal = request.terminal;
    BERTH_ASSIGN_OR_RETURN(pid_t init, LaunchShim(launch));
    BERTH_RETURN_IF_ERROR(records_.SetPid(ctx.ns, request.id, init));
    return init;
  }();
  std::shared_ptr<Task> task;
  {
    absl::MutexLock lock(&mu_);
    task = tasks_[Key(ctx.ns, request.id)];
    if (!pid.ok()) {
      tasks_.erase(Key(ctx.ns, request.id));
    } else {
      task->record.pid = *pid;
      task->shim = std::make_unique<ShimClient>(dir + "/shim");
      task->status = "created";
    }
  }
  if (!pid.ok()) {
    if (absl::Status cleaned = CleanUp(record); !cleaned.ok()) {
      BERTH_LOG(Error) << "task " << request.id << ": cleaning up a failed create: " << cleaned;
    }
    return pid.status();
  }
  ev::TaskCreate event;
  event.set_container_id(request.id);
  event.set_bundle(dir);
  event.set_pid(*pid);
  event.mutable_io()->set_stdin(request.stdin_path);
  event.mutable_io()->set_stdout(request.stdout_path);
  event.mutable_io()->set_stderr(request.stderr_path);
  event.mutable_io()->set_terminal(request.terminal);
  for (const mount::Mount& m : request.rootfs) {
    auto* out = event.add_rootfs();
    out->set_type(m.type);
    out->set_source(m.source);
    for (const std::string& o : m.options) {
      out->add_options(o);
    }
  }
  Publish(ctx.ns, "/tasks/create", event);
  WatchOom(task->record);
  StartWatcher(task);
  RefreshGauges();
  return *pid;
}

absl::Status TaskManager::CleanUp(const TaskRecord& record, bool runtime_deleted) {
  oom_->Remove(Key(record.ns, record.id));
  const std::string dir = TaskDir(record.ns, record.id);
  if (!runtime_deleted) {
    int status = 0;
    // Kills what still runs, removes the runtime's state and the container's cgroup. A
    // container the runtime never knew is fine.
    RunProgram({record.runtime.empty() ? options_.default_runtime : record.runtime, "--root",
                RuntimeRoot(record.ns), "delete", "--force", record.id},
               &status)
        .IgnoreError();
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    // Never remove a tree with a rootfs still mounted in it.
    BERTH_RETURN_IF_ERROR(mounter_.Unmount(dir + "/rootfs"));
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("remove ", dir, ": ", ec.message()));
    }
  }
  return records_.Delete(record.ns, record.id);
}

void TaskManager::StartWatcher(std::shared_ptr<Task> task) {
  absl::MutexLock lock(&mu_);
  watchers_.emplace_back([this, task] { Watch(task); });
}

void TaskManager::Watch(std::shared_ptr<Task> task) {
  Context ctx;
  ctx.ns = task->record.ns;
  ctx.cancellation = stop_;
  absl::StatusOr<ProcessExit> exit = task->shim->Wait(ctx, "");
  if (stop_->IsCancelled()) {
    return;
  }
  if (!exit.ok()) {
    {
      absl::MutexLock lock(&mu_);
      if (task->deleting) {
        return;
      }
    }
    // The shim is gone. Its exit record, if it wrote one, is the truth; otherwise the container
    // is killed with the runtime (no shim keeps its stdio or reaps it any more).
    {
      absl::MutexLock lock(&mu_);
      task->shim_dead = true;
    }
    std::optional<ProcessExit> recorded = ReadExitRecord(task->shim->state_dir(), "");
    if (!recorded.has_value()) {
      int status = 0;
      RunProgram({task->record.runtime, "--root", RuntimeRoot(task->record.ns), "delete",
                  "--force", task->record.id},
                 &status)
          .IgnoreError();
      recorded = ProcessExit{255, absl::Now()};
      BERTH_LOG(Warn) << "task " << task->record.ns << "/" << task->record.id
                      << ": its shim died (" << exit.status()
                      << "); the container was killed and is reported exited with status 255";
    }
    exit = *recorded;
  }
  OnExit(*task, *exit);
  RefreshGauges();
}

void TaskManager::OnExit(Task& task, ProcessExit exit) {
  absl::MutexLock lock(&mu_);
  // A container that exits at once must not have its /tasks/exit before its /tasks/start.
  auto started = [&task]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !task.starting; };
  mu_.Await(absl::Condition(&started));
  if (!task.record.exit_published) {
    PublishExit(task, "", static_cast<pid_t>(task.record.pid), exit);
    task.record.exit_published = true;
  }
  // Only now is the exit told (Wait, Get): whoever learns of it can crash execd without the
  // event being lost or sent twice.
  task.exit = exit;
  task.status = "stopped";
}

void TaskManager::PublishExit(Task& task, const std::string& exec_id, pid_t pid,
                              const ProcessExit& exit) {
  const TaskRecord& r = task.record;
  ev::TaskExit event;
  event.set_container_id(r.id);
  event.set_id(exec_id.empty() ? r.id : exec_id);
  event.set_pid(static_cast<uint32_t>(pid));
  event.set_exit_status(exit.status);
  SetTimestamp(event.mutable_exited_at(), exit.exited_at);
  const std::string key = ExitEventKey(r.ns, r.id, exec_id, pid);
  if (options_.publisher != nullptr) {
    if (absl::Status st = options_.publisher->PublishOnce(r.ns, "/tasks/exit", event, key);
        !st.ok()) {
      BERTH_LOG(Warn) << "publish /tasks/exit of " << r.id << " " << exec_id << ": " << st;
    }
  }
  // For the crash test only (integration/execd_restart_test.cc): dies in the window between
  // the outbox's commit and the record's.
  if (const char* point = ::getenv("BERTH_EXECD_CRASH_POINT");
      point != nullptr && absl::string_view(point) == "exit-event") {
    ::_exit(137);
  }
  absl::Status marked = exec_id.empty() ? records_.MarkExitPublished(r.ns, r.id)
                                        : records_.MarkExecExitPublished(r.ns, r.id, exec_id);
  if (!marked.ok()) {
    BERTH_LOG(Error) << "task " << r.id << " " << exec_id << ": remembering its exit event: "
                     << marked;
    return;  // the key stays: a later publish of this exit is still dropped
  }
  if (options_.publisher != nullptr) {
    options_.publisher->Forget(key).IgnoreError();
  }
}

void TaskManager::StartExecWatcher(std::shared_ptr<Task> task, const std::string& exec_id) {
  watchers_.emplace_back([this, task, exec_id] { WatchExec(task, exec_id); });
}

void TaskManager::WatchExec(std::shared_ptr<Task> task, std::string exec_id) {
  Context ctx;
  ctx.ns = task->record.ns;
  ctx.cancellation = stop_;
  absl::StatusOr<ProcessExit> exit = task->shim->Wait(ctx, exec_id);
  if (stop_->IsCancelled()) {
    return;
  }
  if (!exit.ok()) {
    // The shim is gone: its record of the exit, if it wrote one, else as for a dead shim.
    std::optional<ProcessExit> recorded = ReadExitRecord(task->shim->state_dir(), exec_id);
    if (!recorded.has_value()) {
      BERTH_LOG(Warn) << "task " << task->record.id << ": exec " << exec_id
                      << ": no exit from its shim (" << exit.status()
                      << "); reported exited with status 255";
    }
    exit = recorded.value_or(ProcessExit{255, absl::Now()});
  }
  absl::MutexLock lock(&mu_);
  auto it = task->execs.find(exec_id);
  if (it == task->execs.end()) {
    return;  // deleted meanwhile; DeleteProcess published its exit
  }
  if (!it->second.exit_published) {
    PublishExit(*task, exec_id, it->second.pid, *exit);
    it->second.exit_published = true;
  }
  it->second.exit = *exit;  // only now: Wait answers after the event
}

absl::Status TaskManager::Recover() {
  BERTH_ASSIGN_OR_RETURN(std::vector<TaskRecord> records, records_.List());
  BERTH_ASSIGN_OR_RETURN(std::vector<ExecRecord> exec_records, records_.ListExecs());
  std::map<std::string, std::vector<ExecRecord>> execs_of;
  for (ExecRecord& e : exec_records) {
    execs_of[Key(e.ns, e.id)].push_back(std::move(e));
  }
  for (TaskRecord& record : records) {
    if (record.pid == 0) {
      // A create that a crash interrupted: nothing was promised to anyone yet.
      BERTH_LOG(Info) << "task " << record.ns << "/" << record.id
                      << ": removing an unfinished create";
      if (absl::Status st = CleanUp(record); !st.ok()) {
        BERTH_LOG(Error) << "task " << record.id << ": " << st;
      }
      continue;
    }
    auto task = std::make_shared<Task>();
    task->dir = TaskDir(record.ns, record.id);
    task->shim = std::make_unique<ShimClient>(task->dir + "/shim");
    task->status = "running";
    task->record = record;
    for (const ExecRecord& e : execs_of[Key(record.ns, record.id)]) {
      ExecState& exec = task->execs[e.exec_id];
      exec.request.id = e.id;
      exec.request.exec_id = e.exec_id;
      exec.request.stdin_path = e.stdin_path;
      exec.request.stdout_path = e.stdout_path;
      exec.request.stderr_path = e.stderr_path;
      exec.request.terminal = e.terminal;
      exec.spec_path = absl::StrCat(task->dir, "/exec-", e.exec_id, ".json");
      exec.pid = static_cast<pid_t>(e.pid);
      exec.exit_published = e.exit_published;
    }
    // A crash after an exit's flag and before its key was forgotten left the key.
    if (record.exit_published && options_.publisher != nullptr) {
      options_.publisher->Forget(ExitEventKey(record.ns, record.id, "", record.pid))
          .IgnoreError();
    }
    {
      absl::MutexLock lock(&mu_);
      tasks_[Key(record.ns, record.id)] = task;
      watchers_.emplace_back([this, task] { Reattach(task); });
    }
    WatchOom(record);
  }
  BERTH_LOG(Info) << "reattaching to " << records.size() << " task(s)";
  RefreshGauges();
  return absl::OkStatus();
}

void TaskManager::Reattach(std::shared_ptr<Task> task) {
  Context ctx;
  ctx.ns = task->record.ns;
  ctx.cancellation = stop_;
  const std::string name = absl::StrCat(task->record.ns, "/", task->record.id);
  absl::StatusOr<ProcessState> state;
  while (true) {
    state = task->shim->State(ctx.WithTimeout(options_.reattach_timeout), "");
    if (stop_->IsCancelled()) {
      return;
    }
    if (state.status().code() != absl::StatusCode::kDeadlineExceeded) {
      break;  // an answer, or a dead shim (Watch reports it)
    }
    bool first = false;
    {
      absl::MutexLock lock(&mu_);
      first = !task->unresponsive;
      task->unresponsive = true;
    }
    if (first) {
      BERTH_LOG(Warn) << "task " << name << ": its shim accepts but does not answer within "
                      << options_.reattach_timeout
                      << " (stopped or hung?); reported UNKNOWN, asking again";
      RefreshGauges();
    }
  }
  std::vector<std::string> exec_ids;
  {
    absl::MutexLock lock(&mu_);
    if (task->unresponsive) {
      BERTH_LOG(Info) << "task " << name << ": its shim answers again";
    }
    task->unresponsive = false;
    if (state.ok()) {
      task->status = state->status;
    }
    for (const auto& [exec_id, exec] : task->execs) {
      exec_ids.push_back(exec_id);
    }
  }
  for (const std::string& exec_id : exec_ids) {
    pid_t pid = 0;
    {
      absl::MutexLock lock(&mu_);
      pid = task->execs[exec_id].pid;
    }
    if (pid == 0 && state.ok()) {
      // Recorded, and maybe started by the shim before the crash: the shim knows.
      absl::StatusOr<ProcessState> exec_state =
          task->shim->State(ctx.WithTimeout(options_.reattach_timeout), exec_id);
      if (exec_state.ok() && exec_state->pid > 0) {
        pid = exec_state->pid;
        records_.SetExecPid(task->record.ns, task->record.id, exec_id, pid).IgnoreError();
      }
    }
    absl::MutexLock lock(&mu_);
    auto it = task->execs.find(exec_id);
    if (it != task->execs.end() && pid != 0) {
      it->second.pid = pid;
      if (it->second.exit_published && options_.publisher != nullptr) {
        options_.publisher->Forget(ExitEventKey(task->record.ns, task->record.id, exec_id, pid))
            .IgnoreError();
      }
      StartExecWatcher(task, exec_id);
    }
  }
  RefreshGauges();
  Watch(task);
}

void TaskManager::Publish(const std::string& ns, absl::string_view topic,
                          const google::protobuf::Message& event) {
  if (options_.publisher == nullptr) {
    return;
  }
  if (absl::Status st = options_.publisher->Publish(ns, topic, event); !st.ok()) {
    BERTH_LOG(Warn) << "publish " << topic << ": " << st;
  }
}

void TaskManager::RefreshGauges() {
  if (by_state_ == nullptr) {
    return;
  }
  std::map<std::string, int> counts = {{"created", 0}, {"running", 0}, {"paused", 0},
                                       {"stopped", 0}, {"unknown", 0}};
  int alive = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, task] : tasks_) {
      counts[task->unresponsive ? "unknown" : task->status]++;
      if (task->shim != nullptr && !task->shim_dead && !task->unresponsive) {
        ++alive;
      }
    }
  }
  for (const auto& [state, n] : counts) {
    by_state_->Add({{"state", state}}).Set(n);
  }
  shims_alive_->Set(alive);
}

}  // namespace berth::execd
