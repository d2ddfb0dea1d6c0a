#pragma once

// execd's side of berth-shim (services/execd/shim): starting one, its control socket
// (shim/protocol.h) and the exit records it leaves in its state dir. The shim's answers map to
// codes: notfound NotFound, exists AlreadyExists, invalid InvalidArgument, precondition and
// failed (the runtime refused; its message) FailedPrecondition; a shim that does not answer is
// Unavailable.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/base/program.h"

namespace berth::execd {

struct ShimLaunch {
  std::string shim_binary;  // berth-shim
  std::string id;           // the container id the runtime knows
  std::string bundle;       // holds config.json and rootfs
  std::string state_dir;    // the shim's own directory (created by the caller)
  std::string runtime;      // the OCI runtime binary
  std::string runtime_root;
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
};

// RunProgram (lib/base/program.h) runs the runtime's one-shot commands.
using ::berth::RunProgram;

// Starts a shim, which runs the runtime's create. Returns the container's init pid, or the
// runtime's refusal (FailedPrecondition with its message).
absl::StatusOr<pid_t> LaunchShim(const ShimLaunch& launch);

struct ProcessExit {
  uint32_t status = 0;
  absl::Time exited_at;
};

struct ProcessState {
  pid_t pid = 0;
  std::string status;  // created, running, paused, stopped
  ProcessExit exit;
};

// The exit the shim in `state_dir` recorded for `exec_id` ("" for init), if any.
std::optional<ProcessExit> ReadExitRecord(const std::string& state_dir, const std::string& exec_id);

// One shim's control socket. Each call is one connection. Thread-safe (no state).
class ShimClient {
 public:
  explicit ShimClient(std::string state_dir) : state_dir_(std::move(state_dir)) {}

  absl::StatusOr<pid_t> Start(const Context& ctx);
  absl::StatusOr<pid_t> Exec(const Context& ctx, const std::string& exec_id,
                             const std::string& spec_path, bool terminal,
                             const std::string& stdin_path, const std::string& stdout_path,
                             const std::string& stderr_path);
  absl::StatusOr<ProcessState> State(const Context& ctx, const std::string& exec_id);
  // Blocks until the process exits (or ctx ends).
  absl::StatusOr<ProcessExit> Wait(const Context& ctx, const std::string& exec_id);
  absl::Status Kill(const Context& ctx, const std::string& exec_id, int signal, bool all);
  absl::Status Resize(const Context& ctx, const std::string& exec_id, uint32_t width,
                      uint32_t height);
  absl::Status CloseStdin(const Context& ctx, const std::string& exec_id);
  absl::Status Pause(const Context& ctx);
  absl::Status Resume(const Context& ctx);
  absl::StatusOr<std::vector<uint32_t>> Pids(const Context& ctx);
  absl::Status Update(const Context& ctx, const std::string& resources_path);
  // Deletes an exec'd process, or (exec_id "") the container; the shim then exits.
  absl::Status Delete(const Context& ctx, const std::string& exec_id);

  // Sends `request`, returns the fields after "ok". Waits as long as ctx allows.
  absl::StatusOr<std::vector<std::string>> Call(const Context& ctx,
                                                const std::vector<std::string>& request);

  const std::string& state_dir() const { return state_dir_; }

 private:
  std::string state_dir_;
};

}  // namespace berth::execd
