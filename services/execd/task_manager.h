#pragma once

// execd's tasks (containerd's Tasks semantics, without gRPC): one berth-shim per task, records
// in TaskRecords, events through the publisher, and a watcher thread per task that waits for
// the init process's exit and publishes /tasks/exit exactly once (the shim has the exit on disk
// before it answers; the record's exit_published flag remembers the publish across restarts).
//
// Layout under --state: tasks/<ns>/<id>/ is the bundle (config.json, rootfs/, where the
// request's rootfs mounts go), tasks/<ns>/<id>/shim/ the shim's directory (control.sock, exit
// records); runc/<ns>/ the runtime's root.
//
// Restart: Recover() loads every record, its execs' too, and reattaches to each shim in
// parallel, a thread per task, so nothing waits for another shim: a live shim answers at once
// (a wait at once if the process exited meanwhile); a dead one refuses the connection, and its
// task is reported exited, from the shim's exit record when it left one, else with status 255
// (as containerd reports a dead shim), after the runtime's `delete --force` has removed what the
// container left. A shim that accepts and does not answer (stopped, hung) holds nothing up:
// after `reattach_timeout` its task is reported UNKNOWN, calls on it answer Unavailable with
// the reason, and it is asked again until it answers. /tasks/exit is published exactly once per
// process, whatever the crash point (PublishExit). An OOM kill in a task's memory cgroup
// publishes /tasks/oom (OomWatcher). Thread-safe.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "containerd/types/task/task.pb.h"
#include "lib/base/context.h"
#include "lib/containers/container_store.h"
#include "lib/events/publisher.h"
#include "lib/mount/mount.h"
#include "services/execd/oom_watcher.h"
#include "services/execd/shim_client.h"
#include "services/execd/task_records.h"

namespace berth::execd {

struct TaskManagerOptions {
  std::string state_dir;                 // execd's --state
  std::string shim_binary = "berth-shim";
  std::string default_runtime = "runc";  // execd's --runtime
  events::Publisher* publisher = nullptr;
  std::shared_ptr<prometheus::Registry> registry;  // null: no metrics
  mount::Mounter* mounter = nullptr;               // null: the system's
  // After a restart: how long a shim may take to answer before its task is reported UNKNOWN
  // (it is asked again after each such wait).
  absl::Duration reattach_timeout = absl::Seconds(5);
};

struct CreateTask {
  std::string id;
  std::vector<mount::Mount> rootfs;
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
  std::string runtime_path;  // overrides the container's and the daemon's runtime
};

struct ExecProcess {
  std::string id, exec_id;
  std::string spec_json;  // the OCI Process, as sent
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
};

struct Deleted {
  pid_t pid = 0;
  ProcessExit exit;
};

using ProcessProto = ::containerd::v1::types::Process;

// The protobuf Timestamp of `t`.
inline void SetTimestamp(google::protobuf::Timestamp* ts, absl::Time t) {
  int64_t ns = absl::ToUnixNanos(t);
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

// containerd's status of the shim's word (created, running, paused, stopped).
inline ::containerd::v1::types::Status StatusOf(const std::string& s) {
  namespace types = ::containerd::v1::types;
  if (s == "created") return types::CREATED;
  if (s == "running") return types::RUNNING;
  if (s == "paused") return types::PAUSED;
  if (s == "stopped") return types::STOPPED;
  return types::UNKNOWN;
}

class TaskManager {
 public:
  // `store`, `records` and the publisher must outlive the manager.
  TaskManager(containers::ContainerStore& store, TaskRecords& records, TaskManagerOptions options);
  ~TaskManager();  // stops the watchers (the shims and containers keep running)
  TaskManager(const TaskManager&) = delete;
  TaskManager& operator=(const TaskManager&) = delete;

  // Reattaches to every recorded task and cleans up creates a crash interrupted.
  absl::Status Recover();

  absl::StatusOr<pid_t> Create(const Context& ctx, const CreateTask& request);
  absl::StatusOr<pid_t> Start(const Context& ctx, const std::string& id,
                              const std::string& exec_id);
  absl::StatusOr<ProcessExit> Wait(const Context& ctx, const std::string& id,
                                   const std::string& exec_id);
  absl::Status Kill(const Context& ctx, const std::string& id, const std::string& exec_id,
                    int signal, bool all);
  absl::StatusOr<Deleted> Delete(const Context& ctx, const std::string& id);
  absl::StatusOr<Deleted> DeleteProcess(const Context& ctx, const std::string& id,
                                        const std::string& exec_id);
  absl::StatusOr<ProcessProto> Get(const Context& ctx, const std::string& id,
                                   const std::string& exec_id);
  absl::StatusOr<std::vector<ProcessProto>> List(const Context& ctx);
  // The ids of the namespace's tasks, without asking their shims anything (List does).
  std::vector<std::string> TaskIds(const Context& ctx);
  absl::Status Exec(const Context& ctx, const ExecProcess& request);
  absl::Status ResizePty(const Context& ctx, const std::string& id, const std::string& exec_id,
                         uint32_t width, uint32_t height);
  absl::Status CloseIO(const Context& ctx, const std::string& id, const std::string& exec_id);
  absl::Status Pause(const Context& ctx, const std::string& id);
  absl::Status Resume(const Context& ctx, const std::string& id);
  absl::StatusOr<std::vector<uint32_t>> ListPids(const Context& ctx, const std::string& id);
  // `resources_json`: the OCI LinuxResources, as sent.
  absl::Status Update(const Context& ctx, const std::string& id,
                      const std::string& resources_json);
  // Where task `id` of namespace `ns` has (or would have) its bundle: config.json, rootfs/.
  std::string BundleDir(const std::string& ns, const std::string& id) const {
    return TaskDir(ns, id);
  }

 private:
  struct ExecState {
    ExecProcess request;
    std::string spec_path;
    pid_t pid = 0;
    std::optional<ProcessExit> exit;  // once its /tasks/exit is published
    bool exit_published = false;      // the record's flag
  };
  struct Task {
    TaskRecord record;
    std::string dir;  // the bundle
    std::unique_ptr<ShimClient> shim;
    std::map<std::string, ExecState> execs;
    std::optional<ProcessExit> exit;  // the init process's, once known
    std::string status = "created";   // cached: created, running, paused, stopped
    bool shim_dead = false;
    bool unresponsive = false;  // after a restart, the shim has not answered yet (UNKNOWN)
    bool deleting = false;  // Delete told the shim to go: its leaving is not a death
    bool starting = false;  // Start runs: the exit event waits for the start event
  };

  std::string TaskDir(const std::string& ns, const std::string& id) const;
  std::string RuntimeRoot(const std::string& ns) const;
  absl::StatusOr<std::string> RuntimeFor(const containers::Container& c,
                                         const std::string& runtime_path) const;
  // The task; Unavailable while its shim does not answer after a restart, unless
  // `even_unresponsive` (Get and Wait answer without the shim).
  absl::StatusOr<std::shared_ptr<Task>> Find(const Context& ctx, const std::string& id,
                                             bool even_unresponsive = false);
  // Removes what a task leaves: the runtime's state (delete --force kills what still runs and
  // its cgroup; skipped when `runtime_deleted`: the shim's delete did it), the rootfs mount,
  // the directories, the record.
  absl::Status CleanUp(const TaskRecord& record, bool runtime_deleted = false);
  void StartWatcher(std::shared_ptr<Task> task);
  void StartExecWatcher(std::shared_ptr<Task> task, const std::string& exec_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a restart: waits (in rounds of reattach_timeout) for the shim's first answer, learns
  // what the shim did with execs a crash left unstarted in the records, starts the exec
  // watchers, then watches the init process.
  void Reattach(std::shared_ptr<Task> task);
  void Watch(std::shared_ptr<Task> task);
  void WatchExec(std::shared_ptr<Task> task, std::string exec_id);
  // Publishes /tasks/exit for the init process once (record flag), marks the task stopped.
  void OnExit(Task& task, ProcessExit exit);
  // Publishes /tasks/exit of `exec_id` ("" init) once and sets its record's flag: the event goes
  // to the outbox under a key in its own transaction, the flag follows, then the key is
  // forgotten; a crash anywhere between repeats this call, never the event.
  void PublishExit(Task& task, const std::string& exec_id, pid_t pid, const ProcessExit& exit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const std::string& ns, absl::string_view topic,
               const google::protobuf::Message& event);
  // Records `task`'s new status, publishes `event` on `topic` and refreshes the gauges.
  void Announce(const std::string& ns, Task& task, const std::string& status,
                absl::string_view topic, const google::protobuf::Message& event)
      ABSL_LOCKS_EXCLUDED(mu_);
  void RefreshGauges() ABSL_LOCKS_EXCLUDED(mu_);
  // Publishes /tasks/oom for the task under `key` ("ns/id").
  void OnOom(const std::string& key);
  void WatchOom(const TaskRecord& record);

  containers::ContainerStore& store_;
  TaskRecords& records_;
  const TaskManagerOptions options_;
  mount::Mounter& mounter_;
  std::shared_ptr<Cancellation> stop_ = std::make_shared<Cancellation>();

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Task>> tasks_ ABSL_GUARDED_BY(mu_);  // "ns/id"
  std::vector<std::thread> watchers_ ABSL_GUARDED_BY(mu_);

  prometheus::Family<prometheus::Gauge>* by_state_ = nullptr;
  prometheus::Gauge* shims_alive_ = nullptr;
  prometheus::Histogram* start_latency_ = nullptr;
  // Last: stopped first, while everything its callback uses is still there.
  std::unique_ptr<OomWatcher> oom_;
};

}  // namespace berth::execd
