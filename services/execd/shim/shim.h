#pragma once

// berth-shim's event loop: one container's processes (init and exec'd), their stdio, the exits
// it reaps and records, and the control socket (protocol.h). Single-threaded: epoll over the
// signalfd (SIGCHLD), the control socket and connections, and the stdio pumps. A runtime
// command runs to completion inside the loop (reaping only its own pid), so no exit is reaped
// by the wrong waiter.
//
// Every exit is written to <state dir>/exit-<exec id> ("exit" for init: "STATUS EXITED_AT_NS
// PID\n", written atomically and fsynced) before any waiter is answered; execd reads the file
// when the shim is gone.

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/unique_fd.h"
#include "services/execd/shim/io.h"
#include "services/execd/shim/sys.h"

namespace berth::shim {

struct Config {
  std::string id;
  std::string bundle;
  std::string state_dir;  // the shim's cwd: control.sock, exit files, pid files, runtime.log
  Runtime runtime;
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
};

class Shim {
 public:
  explicit Shim(Config config);
  // Opens the control socket and the stdio, and runs the runtime's create. Returns "" or the
  // error (the runtime's message when it refused).
  std::string Create();
  // Serves until the init process is deleted.
  void Run();
  pid_t init_pid() const;

 private:
  struct Process {
    std::string exec_id;
    pid_t pid = 0;
    bool started = false;
    bool exited = false;
    unsigned exit_status = 0;
    long long exited_at = 0;
    Stdio stdio;
    std::vector<int> waiters;  // connections waiting for the exit
  };

  void Reap();
  void RecordExit(Process& p, int wait_status);
  void OnConnection(int fd);
  // Answers one request; may park the connection (wait). Returns whether `fd` was answered.
  bool Handle(int fd, const std::vector<std::string>& request);
  std::string DoExec(const std::vector<std::string>& r, pid_t* pid);
  // The runtime's create or exec (`args` without the id) with p's stdio, and for a terminal
  // the console socket; the pty's pumps start once the runtime has sent the master.
  std::string RunWithStdio(Process& p, std::vector<std::string> args);
  std::string DoKill(Process& p, int signal, bool all);
  Process* Find(const std::string& exec_id);
  void Reply(int fd, const std::vector<std::string>& fields);
  void ReplyError(int fd, const std::string& kind, const std::string& message);
  void CloseConnection(int fd);

  Config config_;
  UniqueFd epoll_;
  UniqueFd signals_;
  UniqueFd control_;
  std::string console_socket_;
  std::map<std::string, std::unique_ptr<Process>> processes_;  // "" is init
  std::map<int, std::string> connections_;                     // fd -> bytes read so far
  bool paused_ = false;
  bool deleted_ = false;
};

}  // namespace berth::shim
