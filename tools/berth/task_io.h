#pragma once

// The CLI's end of a task's stdio, as containerd's cio and ctr make it: FIFOs in a fresh
// per-run directory whose paths go to Tasks.Create (or Exec), copied to and from the CLI's own
// stdin, stdout and stderr by threads; a terminal in raw mode for -t; and a thread that turns
// the CLI's signals into Kill and ResizePty calls.

#include <termios.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/base/unique_fd.h"

namespace berth::cli {

class TaskIo {
 public:
  struct Options {
    bool stdin = false;   // make a stdin FIFO and copy the CLI's stdin into it
    bool stderr = true;   // a separate stderr FIFO (false with a terminal: it is all stdout)
  };
  // Makes <run_dir>/fifo/<random>/ with <id>-stdin, <id>-stdout, <id>-stderr FIFOs and opens
  // the CLI's ends; the output FIFOs are held open for writing too until Started(), so a read
  // cannot see end-of-file before the shim opens them.
  static absl::StatusOr<std::unique_ptr<TaskIo>> Create(const std::string& run_dir,
                                                        const std::string& id, Options options);
  ~TaskIo();  // stops the copies and removes the directory
  TaskIo(const TaskIo&) = delete;
  TaskIo& operator=(const TaskIo&) = delete;

  const std::string& stdin_path() const { return stdin_path_; }  // empty without stdin
  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }  // empty without stderr

  // Starts copying stdout and stderr FIFOs to fds 1 and 2, and fd 0 into stdin; `on_stdin_eof`
  // runs (on the copy thread) once the CLI's stdin ended and the FIFO is closed (CloseIO).
  void StartCopying(std::function<void()> on_stdin_eof);
  // The shim has its ends open (the task started): drop the CLI's placeholder writers, so the
  // output copies end when the shim closes its ends.
  void Started();
  // Waits until the output copies reached end-of-file (everything the process wrote is out).
  void WaitOutput();

 private:
  TaskIo() = default;
  void CopyOut(int from, int to);
  void CopyIn(std::function<void()> on_eof);

  std::string dir_;
  std::string stdin_path_, stdout_path_, stderr_path_;
  UniqueFd stdin_fd_, stdout_fd_, stderr_fd_;
  std::vector<UniqueFd> placeholders_;
  UniqueFd stop_;  // eventfd: set to end every copy
  std::vector<std::thread> outputs_;
  std::thread input_;
};

// Puts the terminal on fd 0 in raw mode while it lives (nothing when fd 0 is not a terminal).
class RawTerminal {
 public:
  RawTerminal();
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  bool active_ = false;
  struct termios saved_ {};
};

// The size of the terminal on fd 0 (or 1): false when neither is one.
bool TerminalSize(uint32_t* width, uint32_t* height);

// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH in the calling thread (call it before
// any other thread starts, so every later thread inherits the mask) and handles them on a
// thread of its own: SIGWINCH calls `on_resize`, the others `on_signal(signo)`.
class SignalRelay {
 public:
  static void BlockSignals();
  SignalRelay(std::function<void(int)> on_signal, std::function<void()> on_resize);
  ~SignalRelay();
  SignalRelay(const SignalRelay&) = delete;
  SignalRelay& operator=(const SignalRelay&) = delete;

 private:
  UniqueFd signal_fd_;
  UniqueFd stop_;
  std::thread thread_;
};

}  // namespace berth::cli
