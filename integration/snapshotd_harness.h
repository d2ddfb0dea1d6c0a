#pragma once

// A real snapshotd for integration tests, started in a directory the test owns and stopped by
// the object that started it (by PID), like harness.h's Contentd (it shares DaemonProcess).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "integration/harness.h"

namespace berth::integration {

// A snapshotd under `dir`: root dir/sd-root, state dir/sd-state, socket dir/sd.sock. Start()
// waits until the socket accepts connections.
class Snapshotd {
 public:
  struct Options {
    std::string snapshotter = "overlayfs";  // --snapshotter
    std::string contentd_address;           // empty: a path where no contentd listens
    std::string default_namespace = "default";
    std::string log_level = "debug";
    std::vector<std::string> extra_args;
    std::vector<std::string> env;  // "NAME=VALUE" added to its environment (crash points)
  };
  Snapshotd(std::string dir, Options options);
  ~Snapshotd();  // SIGKILLs a running daemon (through Process)
  Snapshotd(const Snapshotd&) = delete;
  Snapshotd& operator=(const Snapshotd&) = delete;

  // Starts the daemon and waits (up to 20 s) for its socket. On failure the error carries the
  // daemon's log. Starting again after Kill/Stop reuses the same root, state and socket.
  absl::Status Start();
  // SIGKILL and reap.
  void Kill();
  // SIGTERM, wait; returns the wait status (0 when not running).
  int Stop();
  bool running() const { return process_.running(); }

  const std::string& address() const { return address_; }
  const std::string& root() const { return root_; }
  const std::string& state() const { return state_; }
  pid_t pid() const { return process_.pid(); }
  // Every log written by every start so far.
  std::string ReadLog() const { return process_.ReadLog(); }

 private:
  std::string dir_;
  Options options_;
  std::string root_;
  std::string state_;
  std::string address_;
  DaemonProcess process_;
};

}  // namespace berth::integration
