#pragma once

// A command run on the slave side of a pty (forkpty), as a person at a terminal runs it: the
// test types into the master, reads what comes back (echo and output), resizes the terminal
// (the kernel sends the command SIGWINCH) and waits for the exit. Header-only; the destructor
// SIGKILLs and reaps a command still running. Not thread-safe.

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace berth::integration {

class PtyProcess {
 public:
  // Starts `argv` (argv[0] a path or a name in PATH) on a pty of `cols` x `rows`.
  PtyProcess(std::vector<std::string> argv, unsigned short cols, unsigned short rows) {
    winsize size{};
    size.ws_col = cols;
    size.ws_row = rows;
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ == 0) {
      std::vector<char*> args;
      for (std::string& a : argv) {
        args.push_back(a.data());
      }
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~PtyProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
    if (master_ >= 0) {
      ::close(master_);
    }
  }
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;

  bool started() const { return pid_ > 0 && master_ >= 0; }

  // Types `text` as keystrokes.
  bool Type(const std::string& text) {
    return ::write(master_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }

  // Reads until everything read since the last ReadUntil contains `needle` (true), or the
  // command's side closes or `timeout` passes (false). output() has what was read.
  bool ReadUntil(const std::string& needle, absl::Duration timeout = absl::Seconds(30)) {
    absl::Time deadline = absl::Now() + timeout;
    while (!absl::StrContains(unread_, needle)) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return false;
      }
      pollfd p{master_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (rc < 0 && errno == EINTR) {
        continue;
      }
      if (rc <= 0) {
        continue;
      }
      char buf[4096];
      ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) {
        return false;  // EIO: the slave side is closed
      }
      unread_.append(buf, static_cast<size_t>(n));
      output_.append(buf, static_cast<size_t>(n));
    }
    unread_.erase(0, unread_.find(needle) + needle.size());
    return true;
  }

  // Sets the terminal's size; the kernel tells the command's foreground group (SIGWINCH).
  bool Resize(unsigned short cols, unsigned short rows) {
    winsize size{};
    size.ws_col = cols;
    size.ws_row = rows;
    return ::ioctl(master_, TIOCSWINSZ, &size) == 0;
  }

  // Reads what is left until the slave side closes, then reaps: the wait status.
  int Wait() {
    char buf[4096];
    ssize_t n;
    while (master_ >= 0 && (n = ::read(master_, buf, sizeof buf)) > 0) {
      output_.append(buf, static_cast<size_t>(n));
    }
    int status = -1;
    if (pid_ > 0) {
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    return status;
  }

  // Everything read so far.
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  std::string output_;
  std::string unread_;
};

}  // namespace berth::integration
