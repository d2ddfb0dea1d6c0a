#pragma once

// Running a short-lived program to completion and reading what it prints: the OCI runtime's
// one-shot commands (execd), berth-shim's start (execd), docker's credential helpers (lib/images).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/context.h"

namespace berth {

struct ProgramOptions {
  // Written to the program's stdin, which is then closed; empty: stdin is /dev/null. At most
  // 64 KiB (it is written before the program starts, so a program that never reads cannot
  // block the caller).
  std::string input;
  // Whether the program's stderr goes into the output too; otherwise it is /dev/null.
  bool capture_stderr = true;
  // How long the program may run. When it (or `ctx`'s deadline, whichever comes first) passes
  // before the program has exited, its process group is killed (SIGKILL, so what it started
  // goes too) and reaped, and the call is DeadlineExceeded naming the program. Infinite and no
  // ctx: it may run forever.
  absl::Duration timeout = absl::InfiniteDuration();
  // The caller's request: its deadline bounds the run, and its cancellation kills the program
  // the same way (Cancelled). Must outlive the call.
  const Context* ctx = nullptr;
};

// Runs `argv` (searched in PATH) with an empty signal mask (daemons block theirs), waits for it
// and returns what it wrote (up to 1 MiB); the wait status goes to *wait_status when given.
// An error only when it cannot be started (NotFound for a program not in PATH) or read, or
// when it ran past its time (above). With a timeout or a context it runs in a process group
// of its own.
absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv, int* wait_status,
                                       const ProgramOptions& options = {});

}  // namespace berth
