#pragma once

// Test support for execd's runtime tests: a busybox rootfs (Debian's busybox-static, from
// scripts/install-deps.sh) and OCI specs for it from lib/oci's GenerateSpec, plus the cleanup
// every such test needs whatever happened (runc delete -f, the cgroup, the shim by its pid).

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace berth::execd::testing {

// Where busybox-static installs its binary.
inline constexpr char kBusybox[] = "/bin/busybox";

// Fills `rootfs` with /bin/busybox and links for the applets the tests use, /etc/passwd, /tmp.
absl::Status MakeBusyboxRootfs(const std::string& rootfs);

// A spec running `args` in a rootfs at bundle/rootfs, cgroup /<id> (one level, so runc's delete
// leaves no parent behind).
absl::StatusOr<nlohmann::json> BusyboxSpec(const std::string& id, const std::string& rootfs,
                                           const std::vector<std::string>& args, bool terminal,
                                           int64_t memory_limit_bytes = 0);

// Kills whatever is left of container `id` under runtime root `runtime_root`, and the shim
// whose pid is in `shim_state_dir`/shim.pid (when that process is still a berth-shim).
void ForceCleanup(const std::string& runtime_root, const std::string& id,
                  const std::string& shim_state_dir);

// Makes a FIFO at `path` and reads it to its end in a thread (started before the shim opens
// it, as containerd's clients do). A FIFO nobody opened (a failed test) is unblocked by the
// destructor.
class FifoReader {
 public:
  explicit FifoReader(std::string path);
  ~FifoReader();
  FifoReader(const FifoReader&) = delete;
  FifoReader& operator=(const FifoReader&) = delete;
  // Everything read, once every writer has closed the FIFO.
  std::string Finish();

 private:
  std::string path_;
  std::thread thread_;
  std::string data_;
};

// Whether the shim in `state_dir` (by shim.pid) is alive.
bool ShimAlive(const std::string& state_dir);

}  // namespace berth::execd::testing
