// `berth run`, `berth create` and `berth start`: a container made the way containerd's clients
// make one (tools/berth/container_setup.h), its task created on execd with the rootfs mounts
// and stdio, started and waited for. `berth run`'s exit code is the container's.

#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"
#include "lib/snapshots/proto_convert.h"
#include "tools/berth/commands.h"
#include "tools/berth/container_setup.h"
#include "tools/berth/task_io.h"

namespace berth::cli {
namespace {

namespace tasks = ::containerd::services::tasks::v1;

struct RunArgs {
  ContainerFlags flags;
  bool detach = false;
  bool rm = false;
  bool interactive = false;
};

// file:///<run dir>/logs/<ns>/<id>.log, the directory made.
absl::StatusOr<std::string> LogUri(const Session& session, const std::string& id) {
  std::string dir = absl::StrCat(CliRunDir(), "/logs/", session.ns());
  BERTH_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  return absl::StrCat("file://", dir, "/", id, ".log");
}

// Tasks.Create for container `id` with `rootfs` and the stdio given; registers Tasks.Delete.
absl::Status CreateTask(Clients& clients, const std::string& id,
                        const std::vector<mount::Mount>& rootfs, const std::string& stdin_path,
                        const std::string& stdout_path, const std::string& stderr_path,
                        bool terminal, Undo& undo) {
  tasks::CreateTaskRequest request;
  request.set_container_id(id);
  snapshots::MountsToProto(rootfs, request.mutable_rootfs());
  request.set_stdin(stdin_path);
  request.set_stdout(stdout_path);
  request.set_stderr(stderr_path);
  request.set_terminal(terminal);
  tasks::CreateTaskResponse response;
  BERTH_RETURN_IF_ERROR(
      clients.TaskStatus(clients.tasks->Create(clients.TaskContext().get(), request, &response)));
  undo.Add("delete task " + id, [&clients, id] {
    tasks::KillRequest kill;
    kill.set_container_id(id);
    kill.set_signal(9);
    kill.set_all(true);
    google::protobuf::Empty empty;
    clients.tasks->Kill(clients.TaskContext().get(), kill, &empty);
    tasks::WaitRequest wait;
    wait.set_container_id(id);
    tasks::WaitResponse waited;
    clients.tasks->Wait(clients.TaskContext().get(), wait, &waited);
    tasks::DeleteTaskRequest del;
    del.set_container_id(id);
    tasks::DeleteResponse deleted;
    return clients.TaskStatus(clients.tasks->Delete(clients.TaskContext().get(), del, &deleted));
  });
  return absl::OkStatus();
}

absl::Status StartTask(Clients& clients, const std::string& id, const std::string& exec_id = "") {
  tasks::StartRequest request;
  request.set_container_id(id);
  request.set_exec_id(exec_id);
  tasks::StartResponse response;
  return clients.TaskStatus(clients.tasks->Start(clients.TaskContext().get(), request, &response));
}

}  // namespace

absl::StatusOr<containers::Container> GetContainer(Clients& clients, const std::string& id) {
  absl::StatusOr<containers::Container> record = clients.containers.Get(clients.session.context(), id);
  if (!record.ok()) {
    return clients.session.Explain("execd", record.status());
  }
  return record;
}

absl::StatusOr<uint32_t> AttachAndWait(Clients& clients, const std::string& id,
                                       const std::string& exec_id, TaskIo* io, bool terminal,
                                       const std::function<absl::Status()>& start) {
  auto resize = [&clients, id, exec_id] {
    uint32_t width = 0, height = 0;
    if (!TerminalSize(&width, &height)) {
      return;
    }
    tasks::ResizePtyRequest request;
    request.set_container_id(id);
    request.set_exec_id(exec_id);
    request.set_width(width);
    request.set_height(height);
    google::protobuf::Empty empty;
    clients.tasks->ResizePty(clients.TaskContext().get(), request, &empty);
  };
  auto forward = [&clients, id, exec_id](int signo) {
    tasks::KillRequest request;
    request.set_container_id(id);
    request.set_exec_id(exec_id);
    request.set_signal(static_cast<uint32_t>(signo));
    google::protobuf::Empty empty;
    clients.tasks->Kill(clients.TaskContext().get(), request, &empty);
  };
  io->StartCopying([&clients, id, exec_id] {
    tasks::CloseIORequest request;
    request.set_container_id(id);
    request.set_exec_id(exec_id);
    request.set_stdin(true);
    google::protobuf::Empty empty;
    clients.tasks->CloseIO(clients.TaskContext().get(), request, &empty);
  });
  std::unique_ptr<RawTerminal> raw;
  if (terminal) {
    raw = std::make_unique<RawTerminal>();
  }
  // Wait is called before Start, as containerd's clients do, so no exit can be missed. (An
  // exec process is waited for after its Start: execd's shim knows it only from then on, and
  // keeps its exit until DeleteProcess, so nothing is missed either.)
  tasks::WaitRequest wait;
  wait.set_container_id(id);
  wait.set_exec_id(exec_id);
  tasks::WaitResponse waited;
  auto wait_context = clients.TaskContext();
  grpc::Status wait_status;
  std::thread waiter;
  auto start_waiting = [&] {
    waiter = std::thread(
        [&] { wait_status = clients.tasks->Wait(wait_context.get(), wait, &waited); });
  };
  if (exec_id.empty()) {
    start_waiting();
  }
  absl::Status started = start();
  if (!started.ok()) {
    if (waiter.joinable()) {
      wait_context->TryCancel();
      waiter.join();
    }
    return started;
  }
  if (!exec_id.empty()) {
    start_waiting();
  }
  io->Started();
  SignalRelay relay(forward, resize);
  if (terminal) {
    resize();
  }
  waiter.join();
  BERTH_RETURN_IF_ERROR(clients.TaskStatus(wait_status));
  io->WaitOutput();
  return waited.exit_status();
}

namespace {

absl::Status Run(Session& session, const RunArgs& args) {
  if (args.detach && args.rm) {
    return UsageError("-d cannot be combined with --rm (nothing stays attached)");
  }
  SignalRelay::BlockSignals();
  Clients clients(session, args.flags.snapshotter);
  Undo undo;
  std::map<std::string, std::string> labels;
  std::string id = args.flags.name;
  std::string log_uri;
  if (args.detach) {
    if (id.empty()) {
      id = RandomHex(16);
    }
    BERTH_ASSIGN_OR_RETURN(log_uri, LogUri(session, id));
    labels[kLogUriLabel] = log_uri;
  }
  ContainerFlags flags = args.flags;
  flags.name = id;
  BERTH_ASSIGN_OR_RETURN(CreatedContainer created, CreateContainer(clients, flags, labels, undo));
  if (args.detach) {
    // -i: stdin stays open (a FIFO no one has written to yet), as docker's run -d -i.
    std::string stdin_path;
    if (args.interactive) {
      stdin_path = DetachedStdinPath(PathOfFileUri(log_uri));
      if (::mkfifo(stdin_path.c_str(), 0600) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, absl::StrCat("mkfifo ", stdin_path));
      }
      undo.Add("remove " + stdin_path, [stdin_path] {
        ::unlink(stdin_path.c_str());
        return absl::OkStatus();
      });
    }
    BERTH_RETURN_IF_ERROR(CreateTask(clients, created.id, created.rootfs, stdin_path, log_uri,
                                     log_uri, flags.tty, undo));
    BERTH_RETURN_IF_ERROR(StartTask(clients, created.id));
    undo.Dismiss();
    std::cout << created.id << std::endl;
    return absl::OkStatus();
  }
  TaskIo::Options io_options;
  io_options.stdin = args.interactive;
  io_options.stderr = !flags.tty;
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<TaskIo> io,
                         TaskIo::Create(CliRunDir(), created.id, io_options));
  BERTH_RETURN_IF_ERROR(CreateTask(clients, created.id, created.rootfs, io->stdin_path(),
                                   io->stdout_path(), io->stderr_path(), flags.tty, undo));
  BERTH_ASSIGN_OR_RETURN(uint32_t exit_status,
                         AttachAndWait(clients, created.id, "", io.get(), flags.tty,
                                       [&] { return StartTask(clients, created.id); }));
  io.reset();
  // The task exited: delete it (no kill needed), then, with --rm, the container and snapshot.
  tasks::DeleteTaskRequest del;
  del.set_container_id(created.id);
  tasks::DeleteResponse deleted;
  BERTH_RETURN_IF_ERROR(
      clients.TaskStatus(clients.tasks->Delete(clients.TaskContext().get(), del, &deleted)));
  undo.DropLast();
  if (args.rm) {
    // Left: the container record (execd) and its snapshot (snapshotd), the rootfs already
    // unmounted by the task's delete. Neither needs the other gone first, and each is a commit
    // in its daemon: both at once.
    undo.RunConcurrently();
  } else {
    // As ctr run does: the container stays; its exit status is kept on the record.
    undo.Dismiss();
    containers::Container update;
    update.id = created.id;
    update.labels[kExitStatusLabel] = std::to_string(exit_status);
    absl::Status updated = clients.containers
                               .Update(session.context(), update,
                                       {absl::StrCat("labels.", kExitStatusLabel)})
                               .status();
    BERTH_RETURN_IF_ERROR(session.Explain("execd", updated));
  }
  session.set_exit_code(static_cast<int>(exit_status));
  return absl::OkStatus();
}

absl::Status Create(Session& session, const ContainerFlags& flags) {
  Clients clients(session, flags.snapshotter);
  Undo undo;
  std::string id = flags.name.empty() ? RandomHex(16) : flags.name;
  BERTH_ASSIGN_OR_RETURN(std::string log_uri, LogUri(session, id));
  ContainerFlags named = flags;
  named.name = id;
  BERTH_ASSIGN_OR_RETURN(CreatedContainer created,
                         CreateContainer(clients, named, {{kLogUriLabel, log_uri}}, undo));
  undo.Dismiss();
  std::cout << created.id << std::endl;
  return absl::OkStatus();
}

// Starts a created container's task detached, its output into the container's log file.
absl::Status Start(Session& session, const std::string& id) {
  Clients clients(session);
  BERTH_ASSIGN_OR_RETURN(containers::Container record, GetContainer(clients, id));
  snapshots::GrpcSnapshotter snapshotter(session.Channel("snapshotd"), record.snapshotter);
  absl::StatusOr<std::vector<mount::Mount>> mounts =
      snapshotter.Mounts(session.context(), record.snapshot_key);
  if (!mounts.ok()) {
    return session.Explain("snapshotd", mounts.status());
  }
  std::string log_uri;
  auto label = record.labels.find(kLogUriLabel);
  if (label != record.labels.end()) {
    log_uri = label->second;
  } else {
    BERTH_ASSIGN_OR_RETURN(log_uri, LogUri(session, id));
  }
  nlohmann::json spec = nlohmann::json::parse(record.spec.value, nullptr, false);
  bool terminal = spec.is_object() && spec.contains("process") &&
                  spec["process"].value("terminal", false);
  Undo undo;
  BERTH_RETURN_IF_ERROR(CreateTask(clients, id, *mounts, "", log_uri, log_uri, terminal, undo));
  BERTH_RETURN_IF_ERROR(StartTask(clients, id));
  undo.Dismiss();
  std::cout << id << std::endl;
  return absl::OkStatus();
}

// IMAGE [COMMAND [ARG...]]: everything after the image is the container's command, flags
// included (main cuts it off before parsing: SplitTrailingCommand).
void AddContainerFlags(CLI::App* app, ContainerFlags& flags) {
  app->add_option("IMAGE", flags.image, "Image name (as pulled)")->required();
  app->add_flag("-t,--tty", flags.tty, "Give the container a terminal");
  app->add_option("-e,--env", flags.env, "KEY=VALUE environment variable; repeatable")
      ->allow_extra_args(false);
  app->add_option("-v,--volume", flags.volumes, "Bind mount SRC:DST[:ro] (absolute paths)")
      ->allow_extra_args(false);
  app->add_option("--net", flags.net, "Network: none (default), host, or a netns path");
  app->add_option("--memory", flags.memory, "Memory limit (512m, 1g)");
  app->add_option("--cpus", flags.cpus, "CPU quota in CPUs (1.5)");
  app->add_option("--pids-limit", flags.pids_limit, "Maximum number of processes");
  app->add_option("-u,--user", flags.user, "user[:group] (names or numbers)");
  app->add_option("-w,--workdir", flags.workdir, "Working directory inside the container");
  app->add_option("--name", flags.name, "Container id (default: random)");
  app->add_option("--hostname", flags.hostname, "Hostname (default: the id's first 12)");
  app->add_option("--runtime", flags.runtime, "Runtime name for execd")
      ->default_str(kDefaultRuntime);
  app->add_option("--snapshotter", flags.snapshotter, "Snapshotter of the image's layers")
      ->default_str("overlayfs");
}

}  // namespace

void RegisterRunCommands(CLI::App& root, Runner& runner) {
  auto run_args = std::make_shared<RunArgs>();
  CLI::App* run = root.add_subcommand("run", "Run a command in a new container and wait for it");
  AddContainerFlags(run, run_args->flags);
  run->add_flag("-d,--detach", run_args->detach, "Start it and print its id; output to its log");
  run->add_flag("--rm", run_args->rm, "Remove the container (and its snapshot) when it exits");
  run->add_flag("-i,--interactive", run_args->interactive, "Copy stdin into the container");
  run->callback(runner.Wrap([run_args](Session& session) {
    run_args->flags.command = TrailingCommand();
    return Run(session, *run_args);
  }));

  auto create_flags = std::make_shared<ContainerFlags>();
  CLI::App* create = root.add_subcommand("create", "Create a container (no task yet)");
  AddContainerFlags(create, *create_flags);
  create->callback(runner.Wrap([create_flags](Session& session) {
    create_flags->command = TrailingCommand();
    return Create(session, *create_flags);
  }));

  auto start_id = std::make_shared<std::string>();
  CLI::App* start = root.add_subcommand("start", "Start a created container, detached");
  start->add_option("CONTAINER", *start_id, "Container id")->required();
  start->callback(
      runner.Wrap([start_id](Session& session) { return Start(session, *start_id); }));
}

}  // namespace berth::cli
