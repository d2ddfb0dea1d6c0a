#pragma once

// berth-shim's small POSIX layer (plain libc: the shim links no abseil, so lib/base's Status
// helpers are not available here). Errors are returned as strings a person can read.

#include <sys/types.h>

#include <string>
#include <vector>

#include "lib/base/unique_fd.h"

namespace berth::shim {

// Appends a line to the shim's log (its stderr, <state dir>/shim.log).
void Log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// "what: strerror(errno)".
std::string Errno(const std::string& what);

// Writes `data` to `dir`/`name` through a temporary file: write, fsync, rename, fsync(dir).
// With `sync` false, no fsyncs: still whole or absent, but only a crash of the process (not of
// the machine) is survived. Returns "" or the error.
std::string WriteDurable(const std::string& dir, const std::string& name, const std::string& data,
                         bool sync = true);

// The whole file, or false.
bool ReadWhole(const std::string& path, std::string* out);

// Nanoseconds since the epoch (CLOCK_REALTIME).
long long NowNs();

// The containerd exit status of a wait status: the code, or 128 + the signal.
unsigned ExitStatusOf(int wait_status);

// The OCI runtime to run: `binary --root ROOT --log LOG --log-format json ...`.
struct Runtime {
  std::string binary;
  std::string root;
  std::string log;  // truncated before each command; its last error is the message returned
};

// What a runtime command was given: its stdio (-1: /dev/null) and optionally a console socket
// listener, on which the runtime hands back a pty master while it runs.
struct RunOptions {
  int in = -1;
  int out = -1;
  int err = -1;
  int console_listener = -1;
  UniqueFd* console = nullptr;  // receives the pty master when console_listener is set
  std::string* output = nullptr;  // when set, stdout is captured here (out is ignored)
};

// Runs `runtime args...` and waits for it (reaping only its pid). Returns "" when it exited 0,
// else the runtime's own error message (from its json log), or how it ended.
std::string RunRuntime(const Runtime& runtime, const std::vector<std::string>& args,
                       const RunOptions& options);

// A unix stream socket listening at `path` (relative to the cwd), mode `mode`. -1 and *error.
int ListenUnix(const std::string& path, mode_t mode, std::string* error);

// Sets O_NONBLOCK on fd.
void SetNonBlocking(int fd);

}  // namespace berth::shim
