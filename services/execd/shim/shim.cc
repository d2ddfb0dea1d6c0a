#include "services/execd/shim/shim.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>

#include "services/execd/shim/protocol.h"

namespace berth::shim {
namespace {

constexpr size_t kMaxRequest = 65536;

std::string ExitFileName(const std::string& exec_id) {
  return exec_id.empty() ? "exit" : "exit-" + exec_id;
}

bool ValidExecId(const std::string& id) {
  if (id.empty() || id.size() > 76 || id == "." || id == "..") {
    return false;
  }
  for (char c : id) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

bool ParseInt(const std::string& s, long* out) {
  if (s.empty()) {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  *out = strtol(s.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

pid_t ReadPid(const std::string& path) {
  std::string text;
  long pid = 0;
  if (!ReadWhole(path, &text)) {
    return 0;
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return ParseInt(text, &pid) ? static_cast<pid_t>(pid) : 0;
}

void EpollAdd(int epoll, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  ::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
}

}  // namespace

Shim::Shim(Config config) : config_(std::move(config)) {}

pid_t Shim::init_pid() const {
  auto it = processes_.find("");
  return it == processes_.end() ? 0 : it->second->pid;
}

std::string Shim::Create() {
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) {
    sigaddset(&mask, sig);
  }
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signals_.Reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!epoll_.valid() || !signals_.valid()) {
    return Errno("epoll/signalfd");
  }
  // The console socket is bound as console.sock in the shim's cwd (its state dir) and named to
  // the runtime through /proc/<shim>/cwd: runc changes into the bundle before it dials, so a
  // relative name would miss, and the full path of a deep state dir can exceed sun_path's 108
  // bytes.
  console_socket_ = "/proc/" + std::to_string(::getpid()) + "/cwd/console.sock";
  std::string error;
  control_.Reset(ListenUnix("control.sock", 0600, &error));
  if (!control_.valid()) {
    return error;
  }
  auto init = std::make_unique<Process>();
  error = init->stdio.Open(epoll_.get(), config_.stdin_path, config_.stdout_path,
                           config_.stderr_path, config_.terminal);
  if (!error.empty()) {
    return error;
  }
  error = RunWithStdio(*init, {"create", "--bundle", config_.bundle, "--pid-file", "init.pid"});
  if (!error.empty()) {
    return error;
  }
  init->pid = ReadPid("init.pid");
  if (init->pid <= 0) {
    return "the runtime wrote no pid to init.pid";
  }
  processes_[""] = std::move(init);
  EpollAdd(epoll_.get(), signals_.get());
  EpollAdd(epoll_.get(), control_.get());
  return "";
}

void Shim::Run() {
  epoll_event events[32];
  while (!deleted_) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == signals_.get()) {
        signalfd_siginfo info;
        while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
          if (info.ssi_signo != SIGCHLD) {
            Log("ignoring signal %u: the shim ends with its container's delete", info.ssi_signo);
          }
        }
        Reap();
      } else if (fd == control_.get()) {
        int conn;
        while ((conn = ::accept4(control_.get(), nullptr, nullptr,
                                 SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
          connections_[conn];
          EpollAdd(epoll_.get(), conn);
        }
      } else if (connections_.count(fd) != 0) {
        OnConnection(fd);
      } else {
        for (auto& [id, p] : processes_) {
          if (p->stdio.Handle(fd, events[i].events)) {
            break;
          }
        }
      }
      if (deleted_) {
        break;
      }
    }
  }
}

void Shim::Reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    for (auto& [id, p] : processes_) {
      if (p->pid == pid && !p->exited) {
        RecordExit(*p, status);
        break;
      }
    }
  }
}

void Shim::RecordExit(Process& p, int wait_status) {
  p.stdio.Drain();
  p.exited = true;
  p.exit_status = ExitStatusOf(wait_status);
  p.exited_at = NowNs();
  char record[96];
  snprintf(record, sizeof record, "%u %lld %d\n", p.exit_status, p.exited_at,
           static_cast<int>(p.pid));
  std::string error = WriteDurable(".", ExitFileName(p.exec_id), record);
  if (!error.empty()) {
    Log("recording the exit of pid %d: %s", static_cast<int>(p.pid), error.c_str());
  }
  std::vector<int> waiters;
  waiters.swap(p.waiters);
  for (int fd : waiters) {
    Reply(fd, {"ok", std::to_string(p.exit_status), std::to_string(p.exited_at)});
    CloseConnection(fd);
  }
  if (p.exec_id.empty()) {
    // The container is gone: its processes' stdin goes nowhere now.
    for (auto& [id, q] : processes_) {
      q->stdio.CloseStdin();
    }
  }
}

void Shim::OnConnection(int fd) {
  std::string& buffer = connections_[fd];
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      break;
    }
    if (n <= 0 || buffer.size() + n > kMaxRequest) {
      // Gone (a waiter that gave up, too): forget it.
      for (auto& [id, p] : processes_) {
        auto& w = p->waiters;
        w.erase(std::remove(w.begin(), w.end(), fd), w.end());
      }
      CloseConnection(fd);
      return;
    }
    buffer.append(buf, n);
  }
  size_t nl = buffer.find('\n');
  if (nl == std::string::npos) {
    return;
  }
  std::vector<std::string> request;
  if (!DecodeLine(buffer.substr(0, nl), &request) || request.empty()) {
    ReplyError(fd, "invalid", "a request is one line of escaped fields");
    CloseConnection(fd);
    return;
  }
  buffer.clear();
  if (Handle(fd, request)) {
    CloseConnection(fd);
  }
}

Shim::Process* Shim::Find(const std::string& exec_id) {
  auto it = processes_.find(exec_id);
  return it == processes_.end() ? nullptr : it->second.get();
}

bool Shim::Handle(int fd, const std::vector<std::string>& r) {
  const std::string& op = r[0];
  Process* init = Find("");
  auto need = [&](size_t n) {
    if (r.size() == n) {
      return true;
    }
    ReplyError(fd, "invalid", op + ": expected " + std::to_string(n - 1) + " arguments");
    return false;
  };
  if (op == "start") {
    if (init->started || init->exited) {
      ReplyError(fd, "precondition", "the task was started already");
      return true;
    }
    std::string error = RunRuntime(config_.runtime, {"start", config_.id}, {});
    if (!error.empty()) {
      ReplyError(fd, "failed", error);
      return true;
    }
    init->started = true;
    Reply(fd, {"ok", std::to_string(init->pid)});
    return true;
  }
  if (op == "exec") {
    if (!need(7)) {
      return true;
    }
    pid_t pid = 0;
    std::string error = DoExec(r, &pid);
    if (error.empty()) {
      Reply(fd, {"ok", std::to_string(pid)});
    } else {
      ReplyError(fd, error.rfind("exists", 0) == 0 ? "exists" : "failed", error);
    }
    return true;
  }
  if (op == "pause" || op == "resume") {
    std::string error = RunRuntime(config_.runtime, {op, config_.id}, {});
    if (!error.empty()) {
      ReplyError(fd, "failed", error);
      return true;
    }
    paused_ = op == "pause";
    Reply(fd, {"ok"});
    return true;
  }
  if (op == "pids") {
    std::string out;
    RunOptions run;
    run.output = &out;
    std::string error = RunRuntime(config_.runtime, {"ps", "--format", "json", config_.id}, run);
    if (!error.empty()) {
      ReplyError(fd, "failed", error);
      return true;
    }
    std::vector<std::string> reply = {"ok"};
    std::string number;
    for (char c : out + " ") {
      if (isdigit(static_cast<unsigned char>(c))) {
        number += c;
      } else if (!number.empty()) {
        reply.push_back(number);
        number.clear();
      }
    }
    Reply(fd, reply);
    return true;
  }
  if (op == "update") {
    if (!need(2)) {
      return true;
    }
    std::string error =
        RunRuntime(config_.runtime, {"update", "--resources", r[1], config_.id}, {});
    if (error.empty()) {
      Reply(fd, {"ok"});
    } else {
      ReplyError(fd, "failed", error);
    }
    return true;
  }
  if (r.size() < 2) {
    ReplyError(fd, "invalid", op + ": expected an exec id");
    return true;
  }
  Process* p = Find(r[1]);
  if (p == nullptr) {
    ReplyError(fd, "notfound", "process " + r[1] + " not found");
    return true;
  }
  if (op == "state") {
    const char* status = p->exited ? "stopped"
                         : !p->started && p->exec_id.empty() ? "created"
                         : paused_ ? "paused"
                                   : "running";
    Reply(fd, {"ok", std::to_string(p->pid), status, std::to_string(p->exit_status),
               std::to_string(p->exited_at)});
    return true;
  }
  if (op == "wait") {
    if (p->exited) {
      Reply(fd, {"ok", std::to_string(p->exit_status), std::to_string(p->exited_at)});
      return true;
    }
    p->waiters.push_back(fd);
    return false;
  }
  if (op == "kill") {
    long sig = 0;
    if (!need(4) || !ParseInt(r[2], &sig)) {
      if (r.size() == 4) ReplyError(fd, "invalid", "kill: bad signal " + r[2]);
      return true;
    }
    std::string error = DoKill(*p, static_cast<int>(sig), r[3] == "1");
    if (error.empty()) {
      Reply(fd, {"ok"});
    } else {
      ReplyError(fd, p->exited ? "notfound" : "failed", error);
    }
    return true;
  }
  if (op == "resize") {
    long w = 0, h = 0;
    if (!need(4) || !ParseInt(r[2], &w) || !ParseInt(r[3], &h)) {
      if (r.size() == 4) ReplyError(fd, "invalid", "resize: bad width or height");
      return true;
    }
    if (!p->stdio.console.valid()) {
      ReplyError(fd, "precondition", "process " + r[1] + " has no terminal");
      return true;
    }
    winsize ws{static_cast<unsigned short>(h), static_cast<unsigned short>(w), 0, 0};
    if (::ioctl(p->stdio.console.get(), TIOCSWINSZ, &ws) != 0) {
      ReplyError(fd, "failed", Errno("resize"));
    } else {
      Reply(fd, {"ok"});
    }
    return true;
  }
  if (op == "closeio") {
    p->stdio.CloseStdin();
    Reply(fd, {"ok"});
    return true;
  }
  if (op == "delete") {
    if (p->started && !p->exited) {
      ReplyError(fd, "precondition", "process " + r[1] + " is running");
      return true;
    }
    if (!p->exec_id.empty()) {
      ::unlink(ExitFileName(p->exec_id).c_str());
      processes_.erase(p->exec_id);
      Reply(fd, {"ok"});
      return true;
    }
    std::string error = RunRuntime(config_.runtime, {"delete", "--force", config_.id}, {});
    Reap();
    if (!error.empty()) {
      ReplyError(fd, "failed", error);
      return true;
    }
    Reply(fd, {"ok"});
    deleted_ = true;
    return true;
  }
  ReplyError(fd, "invalid", "unknown request " + op);
  return true;
}

std::string Shim::DoExec(const std::vector<std::string>& r, pid_t* pid) {
  const std::string& exec_id = r[1];
  if (!ValidExecId(exec_id)) {
    return "invalid exec id " + exec_id;
  }
  if (Find(exec_id) != nullptr) {
    return "exists: process " + exec_id + " exists already";
  }
  Process* init = Find("");
  if (!init->started || init->exited) {
    return "the task is not running";
  }
  auto p = std::make_unique<Process>();
  p->exec_id = exec_id;
  bool terminal = r[3] == "1";
  std::string error = p->stdio.Open(epoll_.get(), r[4], r[5], r[6], terminal);
  if (!error.empty()) {
    return error;
  }
  std::string pid_file = "exec-" + exec_id + ".pid";
  error = RunWithStdio(
      *p, {"exec", "--detach", "--pid-file", pid_file, "--process", r[2]});
  if (!error.empty()) {
    return error;
  }
  p->pid = ReadPid(pid_file);
  ::unlink(pid_file.c_str());
  if (p->pid <= 0) {
    return "the runtime wrote no pid for exec " + exec_id;
  }
  p->started = true;
  *pid = p->pid;
  processes_[exec_id] = std::move(p);
  return "";
}

std::string Shim::RunWithStdio(Process& p, std::vector<std::string> args) {
  RunOptions run;
  run.in = p.stdio.in.get();
  run.out = p.stdio.out.get();
  run.err = p.stdio.err.get();
  UniqueFd listener, console;
  std::string error;
  if (p.stdio.terminal) {
    listener.Reset(ListenUnix("console.sock", 0600, &error));
    if (!listener.valid()) {
      return error;
    }
    args.insert(args.end(), {"--console-socket", console_socket_});
    run.console_listener = listener.get();
    run.console = &console;
  }
  args.push_back(config_.id);
  error = RunRuntime(config_.runtime, args, run);
  p.stdio.CloseRuntimeEnds();
  if (p.stdio.terminal) {
    ::unlink("console.sock");
  }
  if (!error.empty() || !p.stdio.terminal) {
    return error;
  }
  if (!console.valid()) {
    return "the runtime did not send the terminal's console";
  }
  return p.stdio.AttachConsole(epoll_.get(), std::move(console));
}

std::string Shim::DoKill(Process& p, int signal, bool all) {
  if (p.exited) {
    return "process " + (p.exec_id.empty() ? config_.id : p.exec_id) + " already finished";
  }
  if (!p.exec_id.empty()) {
    return ::kill(p.pid, signal) == 0 ? "" : Errno("kill");
  }
  std::vector<std::string> args = {"kill"};
  if (all) {
    args.push_back("--all");
  }
  args.insert(args.end(), {config_.id, std::to_string(signal)});
  return RunRuntime(config_.runtime, args, {});
}

void Shim::Reply(int fd, const std::vector<std::string>& fields) {
  std::string line = EncodeLine(fields);
  // A small answer on a fresh unix socket: it fits, but a reader that went away is fine too.
  (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
}

void Shim::ReplyError(int fd, const std::string& kind, const std::string& message) {
  Reply(fd, {"err", kind, message});
}

void Shim::CloseConnection(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  connections_.erase(fd);
  ::close(fd);
}

}  // namespace berth::shim
