#pragma once

// Running a short-lived program to completion and reading what it prints: the OCI runtime's
// one-shot commands (execd), berth-shim's start (execd), docker's credential helpers (lib/images).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth {

struct ProgramOptions {
  // Written to the program's stdin, which is then closed; empty: stdin is /dev/null. At most
  // 64 KiB (it is written before the program starts, so a program that never reads cannot
  // block the caller).
  std::string input;
  // Whether the program's stderr goes into the output too; otherwise it is /dev/null.
  bool capture_stderr = true;
};

// Runs `argv` (searched in PATH) with an empty signal mask (daemons block theirs), waits for it
// and returns what it wrote (up to 1 MiB); the wait status goes to *wait_status when given.
// An error only when it cannot be started (NotFound for a program not in PATH) or read.
absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv, int* wait_status,
                                       const ProgramOptions& options = {});

}  // namespace berth
