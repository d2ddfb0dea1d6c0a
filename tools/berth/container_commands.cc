// Commands on existing containers: ps, exec, kill, stop, rm, logs, pause, unpause, top, wait
// (stats is in stats_command.cc). Records come from execd's Containers service, processes
// from its Tasks service, as containerd serves both.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"
#include "tools/berth/commands.h"
#include "tools/berth/container_setup.h"
#include "tools/berth/output.h"
#include "tools/berth/task_io.h"

namespace berth::cli {
namespace {

namespace tasks = ::containerd::services::tasks::v1;
namespace types = ::containerd::v1::types;

std::string StatusName(types::Status status) {
  std::string name = types::Status_Name(status);
  for (char& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

absl::StatusOr<int> ParseSignal(const std::string& text) {
  static const std::map<std::string, int> kNames = {
      {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"STOP", SIGSTOP},
      {"CONT", SIGCONT}, {"WINCH", SIGWINCH}};
  int n = 0;
  if (absl::SimpleAtoi(text, &n) && n > 0 && n < 65) {
    return n;
  }
  std::string name = text;
  for (char& c : name) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  if (name.rfind("SIG", 0) == 0) {
    name = name.substr(3);
  }
  auto it = kNames.find(name);
  if (it == kNames.end()) {
    return UsageError(absl::StrCat("unknown signal \"", text, "\""));
  }
  return it->second;
}

absl::Status Kill(Clients& clients, const std::string& id, int signo, bool all) {
  tasks::KillRequest request;
  request.set_container_id(id);
  request.set_signal(static_cast<uint32_t>(signo));
  request.set_all(all);
  google::protobuf::Empty empty;
  return clients.TaskStatus(clients.tasks->Kill(clients.TaskContext().get(), request, &empty));
}

// Waits for the task's exit; DeadlineExceeded after `timeout` (zero: the command's deadline).
absl::StatusOr<uint32_t> Wait(Clients& clients, const std::string& id,
                              absl::Duration timeout = absl::ZeroDuration()) {
  tasks::WaitRequest request;
  request.set_container_id(id);
  tasks::WaitResponse response;
  auto context = clients.TaskContext();
  if (timeout > absl::ZeroDuration()) {
    context->set_deadline(absl::ToChronoTime(std::min(clients.session.deadline(),
                                                      absl::Now() + timeout)));
  }
  grpc::Status status = clients.tasks->Wait(context.get(), request, &response);
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError("still running");
  }
  BERTH_RETURN_IF_ERROR(clients.TaskStatus(status));
  return response.exit_status();
}

absl::Status Ps(Session& session, bool all) {
  Clients clients(session);
  absl::StatusOr<std::vector<containers::Container>> records =
      clients.containers.List(session.context(), {});
  if (!records.ok()) {
    return session.Explain("execd", records.status());
  }
  tasks::ListTasksRequest request;
  tasks::ListTasksResponse response;
  BERTH_RETURN_IF_ERROR(
      clients.TaskStatus(clients.tasks->List(clients.TaskContext().get(), request, &response)));
  std::map<std::string, types::Process> by_id;
  for (const types::Process& p : response.tasks()) {
    by_id[p.container_id()] = p;
  }
  Table table({"CONTAINER", "IMAGE", "COMMAND", "STATUS", "PID"});
  nlohmann::json list = nlohmann::json::array();
  for (const containers::Container& c : *records) {
    auto task = by_id.find(c.id);
    std::string status = "created";
    std::string pid;
    if (task != by_id.end()) {
      status = StatusName(task->second.status());
      if (task->second.status() == types::STOPPED) {
        status = absl::StrCat("exited (", task->second.exit_status(), ")");
      } else {
        pid = std::to_string(task->second.pid());
      }
    } else if (c.labels.count(kExitStatusLabel) != 0) {
      status = absl::StrCat("exited (", c.labels.at(kExitStatusLabel), ")");
    }
    bool running = task != by_id.end() && (task->second.status() == types::RUNNING ||
                                           task->second.status() == types::PAUSED);
    if (!all && !running) {
      continue;
    }
    nlohmann::json spec = nlohmann::json::parse(c.spec.value, nullptr, false);
    std::string command;
    if (spec.is_object() && spec.contains("process") && spec["process"].contains("args")) {
      command = absl::StrJoin(spec["process"]["args"].get<std::vector<std::string>>(), " ");
    }
    table.AddRow({c.id, c.image, command, status, pid});
    list.push_back({{"id", c.id}, {"image", c.image}, {"command", command},
                    {"status", status}, {"pid", pid}});
  }
  if (session.json()) {
    PrintJson(std::cout, list);
  } else {
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

struct ExecArgs {
  std::string id;
  std::vector<std::string> command;
  bool tty = false;
  bool interactive = false;
  std::vector<std::string> env;
  std::string workdir;
};

absl::Status Exec(Session& session, const ExecArgs& args) {
  SignalRelay::BlockSignals();
  Clients clients(session);
  BERTH_ASSIGN_OR_RETURN(containers::Container record, GetContainer(clients, args.id));
  nlohmann::json spec = nlohmann::json::parse(record.spec.value, nullptr, false);
  if (!spec.is_object() || !spec.contains("process")) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", args.id, " has no process spec to exec from"));
  }
  nlohmann::json process = spec["process"];
  process["args"] = args.command;
  process["terminal"] = args.tty;
  for (const std::string& e : args.env) {
    process["env"].push_back(e);
  }
  if (!args.workdir.empty()) {
    process["cwd"] = args.workdir;
  }
  std::string exec_id = "exec-" + RandomHex(8);
  TaskIo::Options io_options;
  io_options.stdin = args.interactive;
  io_options.stderr = !args.tty;
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<TaskIo> io,
                         TaskIo::Create(CliRunDir(), exec_id, io_options));
  tasks::ExecProcessRequest request;
  request.set_container_id(args.id);
  request.set_exec_id(exec_id);
  request.set_stdin(io->stdin_path());
  request.set_stdout(io->stdout_path());
  request.set_stderr(io->stderr_path());
  request.set_terminal(args.tty);
  request.mutable_spec()->set_type_url(kProcessTypeUrl);
  request.mutable_spec()->set_value(process.dump());
  google::protobuf::Empty empty;
  BERTH_RETURN_IF_ERROR(
      clients.TaskStatus(clients.tasks->Exec(clients.TaskContext().get(), request, &empty)));
  absl::StatusOr<uint32_t> exit_status =
      AttachAndWait(clients, args.id, exec_id, io.get(), args.tty, [&]() -> absl::Status {
        tasks::StartRequest start;
        start.set_container_id(args.id);
        start.set_exec_id(exec_id);
        tasks::StartResponse started;
        return clients.TaskStatus(
            clients.tasks->Start(clients.TaskContext().get(), start, &started));
      });
  io.reset();
  tasks::DeleteProcessRequest del;
  del.set_container_id(args.id);
  del.set_exec_id(exec_id);
  tasks::DeleteResponse deleted;
  grpc::Status gone = clients.tasks->DeleteProcess(clients.TaskContext().get(), del, &deleted);
  BERTH_RETURN_IF_ERROR(exit_status.status());
  BERTH_RETURN_IF_ERROR(clients.TaskStatus(gone));
  session.set_exit_code(static_cast<int>(*exit_status));
  return absl::OkStatus();
}

absl::Status Stop(Session& session, const std::vector<std::string>& ids, int64_t seconds) {
  Clients clients(session);
  return RemoveEach(session, "execd", ids, [&](const std::string& id) -> absl::Status {
    BERTH_RETURN_IF_ERROR(Kill(clients, id, SIGTERM, false));
    absl::StatusOr<uint32_t> exited = Wait(clients, id, absl::Seconds(std::max<int64_t>(seconds, 0)));
    if (absl::IsDeadlineExceeded(exited.status())) {
      BERTH_RETURN_IF_ERROR(Kill(clients, id, SIGKILL, true));
      exited = Wait(clients, id);
    }
    return exited.status();
  });
}

// Copies the log file to stdout; with `follow`, keeps reading until the task exits.
absl::Status Logs(Session& session, const std::string& id, bool follow) {
  Clients clients(session);
  BERTH_ASSIGN_OR_RETURN(containers::Container record, GetContainer(clients, id));
  auto label = record.labels.find(kLogUriLabel);
  std::string path = label == record.labels.end() ? "" : PathOfFileUri(label->second);
  if (path.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", id, " has no log file (only -d and started containers do)"));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("log ", path));
  }
  std::atomic<bool> exited{!follow};
  std::thread waiter;
  if (follow) {
    waiter = std::thread([&] {
      Wait(clients, id).IgnoreError();
      exited = true;
    });
  }
  char buf[32 * 1024];
  while (true) {
    bool last = exited.load();  // read once more after the exit: the tail
    if (!fd.valid()) {
      fd.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    }
    ssize_t n = 0;
    while (fd.valid() && (n = ::read(fd.get(), buf, sizeof(buf))) > 0) {
      std::cout.write(buf, n);
    }
    std::cout.flush();
    if (last) {
      break;
    }
    ::usleep(100 * 1000);
  }
  if (waiter.joinable()) {
    waiter.join();
  }
  return absl::OkStatus();
}

absl::Status Top(Session& session, const std::string& id) {
  Clients clients(session);
  tasks::ListPidsRequest request;
  request.set_container_id(id);
  tasks::ListPidsResponse response;
  BERTH_RETURN_IF_ERROR(
      clients.TaskStatus(clients.tasks->ListPids(clients.TaskContext().get(), request, &response)));
  Table table({"PID", "COMMAND"});
  nlohmann::json list = nlohmann::json::array();
  for (const types::ProcessInfo& p : response.processes()) {
    absl::StatusOr<std::string> cmdline = ReadFile(absl::StrCat("/proc/", p.pid(), "/cmdline"));
    std::string command = cmdline.ok() ? absl::StrJoin(absl::StrSplit(*cmdline, '\0',
                                                                      absl::SkipEmpty()),
                                                       " ")
                                       : "";
    table.AddRow({std::to_string(p.pid()), command});
    list.push_back({{"pid", p.pid()}, {"command", command}});
  }
  if (session.json()) {
    PrintJson(std::cout, list);
  } else {
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

// A command that takes container ids and calls `fn` on each, going on past failures.
void AddEach(CLI::App& root, Runner& runner, const std::string& name, const std::string& help,
             std::function<absl::Status(Clients&, const std::string&)> fn) {
  auto ids = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = root.add_subcommand(name, help);
  cmd->add_option("CONTAINER", *ids, "Container ids")->required();
  cmd->callback(runner.Wrap([ids, fn](Session& session) {
    Clients clients(session);
    return RemoveEach(session, "execd", *ids,
                      [&](const std::string& id) { return fn(clients, id); });
  }));
}

}  // namespace

void RegisterContainerCommands(CLI::App& root, Runner& runner) {
  auto all = std::make_shared<bool>(false);
  CLI::App* ps = root.add_subcommand("ps", "List running containers (-a: all)");
  ps->add_flag("-a,--all", *all, "Also containers without a running task");
  ps->callback(runner.Wrap([all](Session& session) { return Ps(session, *all); }));

  auto exec = std::make_shared<ExecArgs>();
  CLI::App* exec_cmd = root.add_subcommand("exec", "Run a command in a running container");
  exec_cmd->add_flag("-t,--tty", exec->tty, "Give the process a terminal");
  exec_cmd->add_flag("-i,--interactive", exec->interactive, "Copy stdin into the process");
  exec_cmd->add_option("-e,--env", exec->env, "KEY=VALUE; repeatable")->allow_extra_args(false);
  exec_cmd->add_option("-w,--workdir", exec->workdir, "Working directory");
  exec_cmd->add_option("CONTAINER", exec->id, "Container id")->required();
  exec_cmd->callback(runner.Wrap([exec](Session& session) {
    exec->command = TrailingCommand();  // cut off by main: SplitTrailingCommand
    if (exec->command.empty()) {
      return UsageError("berth exec: want CONTAINER COMMAND [ARG...]");
    }
    return Exec(session, *exec);
  }));

  auto signal = std::make_shared<std::string>("TERM");
  auto kill_all = std::make_shared<bool>(false);
  auto kill_ids = std::make_shared<std::vector<std::string>>();
  CLI::App* kill = root.add_subcommand("kill", "Send a signal to a container's process");
  kill->add_option("-s,--signal", *signal, "Signal name or number (default TERM)");
  kill->add_flag("-a,--all", *kill_all, "Every process in the container");
  kill->add_option("CONTAINER", *kill_ids, "Container ids")->required();
  kill->callback(runner.Wrap([signal, kill_all, kill_ids](Session& session) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(int signo, ParseSignal(*signal));
    Clients clients(session);
    return RemoveEach(session, "execd", *kill_ids, [&](const std::string& id) {
      return Kill(clients, id, signo, *kill_all);
    });
  }));

  auto seconds = std::make_shared<int64_t>(10);
  auto stop_ids = std::make_shared<std::vector<std::string>>();
  CLI::App* stop = root.add_subcommand("stop", "SIGTERM, then SIGKILL after --time seconds");
  stop->add_option("-t,--time", *seconds, "Seconds to wait before SIGKILL (default 10)");
  stop->add_option("CONTAINER", *stop_ids, "Container ids")->required();
  stop->callback(runner.Wrap(
      [seconds, stop_ids](Session& session) { return Stop(session, *stop_ids, *seconds); }));

  auto force = std::make_shared<bool>(false);
  auto rm_ids = std::make_shared<std::vector<std::string>>();
  CLI::App* rm = root.add_subcommand("rm", "Remove containers: task, record, snapshot, log");
  rm->add_flag("-f,--force", *force, "Kill a running container first");
  rm->add_option("CONTAINER", *rm_ids, "Container ids")->required();
  rm->callback(runner.Wrap([force, rm_ids](Session& session) {
    Clients clients(session);
    return RemoveEach(session, "execd", *rm_ids, [&](const std::string& id) {
      return RemoveContainer(clients, id, *force);
    });
  }));

  auto follow = std::make_shared<bool>(false);
  auto logs_id = std::make_shared<std::string>();
  CLI::App* logs = root.add_subcommand("logs", "Print a detached container's output");
  logs->add_flag("-f,--follow", *follow, "Keep printing until the container exits");
  logs->add_option("CONTAINER", *logs_id, "Container id")->required();
  logs->callback(runner.Wrap(
      [follow, logs_id](Session& session) { return Logs(session, *logs_id, *follow); }));

  AddEach(root, runner, "pause", "Freeze a container's processes",
          [](Clients& clients, const std::string& id) {
            tasks::PauseTaskRequest request;
            request.set_container_id(id);
            google::protobuf::Empty empty;
            return clients.TaskStatus(
                clients.tasks->Pause(clients.TaskContext().get(), request, &empty));
          });
  AddEach(root, runner, "unpause", "Thaw a paused container",
          [](Clients& clients, const std::string& id) {
            tasks::ResumeTaskRequest request;
            request.set_container_id(id);
            google::protobuf::Empty empty;
            return clients.TaskStatus(
                clients.tasks->Resume(clients.TaskContext().get(), request, &empty));
          });

  auto top_id = std::make_shared<std::string>();
  CLI::App* top = root.add_subcommand("top", "List a container's processes");
  top->add_option("CONTAINER", *top_id, "Container id")->required();
  top->callback(runner.Wrap([top_id](Session& session) { return Top(session, *top_id); }));

  auto wait_id = std::make_shared<std::string>();
  CLI::App* wait = root.add_subcommand("wait", "Wait for a container to exit; print its status");
  wait->add_option("CONTAINER", *wait_id, "Container id")->required();
  wait->callback(runner.Wrap([wait_id](Session& session) -> absl::Status {
    Clients clients(session);
    BERTH_ASSIGN_OR_RETURN(uint32_t status, Wait(clients, *wait_id));
    std::cout << status << std::endl;
    return absl::OkStatus();
  }));
}

}  // namespace berth::cli
