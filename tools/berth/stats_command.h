#pragma once

// `berth stats`' arithmetic, apart from the command so it can be tested: what one
// containerd.types.Metric (cgroup v1 or v2 statistics, as execd's Tasks.Metrics returns them)
// says about a container, and the docker-like figures two of them give.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "containerd/types/metrics.pb.h"

namespace berth::cli {

struct StatsSample {
  std::string id;
  absl::Time at;
  uint64_t cpu_ns = 0;        // CPU time used so far
  uint64_t memory_usage = 0;  // without the inactive page cache, as docker counts it
  uint64_t memory_limit = 0;  // the cgroup's; no limit reads as `host_memory`
  uint64_t pids = 0;
};

// The sample in `metric`; InvalidArgument for data that is neither
// io.containerd.cgroups.v1.Metrics nor v2. A limit of 0 or above `host_memory` (no limit: v1
// reads 2^63 rounded to pages, v2 "max") is `host_memory`, as docker shows it.
absl::StatusOr<StatsSample> SampleOf(const ::containerd::types::Metric& metric,
                                     uint64_t host_memory);

// CPU use between two samples of one container, in percent of one CPU (200 is two CPUs
// busy): 0 when `before` is not earlier.
double CpuPercent(const StatsSample& before, const StatsSample& now);
// memory_usage in percent of memory_limit (0 without a limit).
double MemoryPercent(const StatsSample& s);
// Binary units with 4 significant digits, as docker prints memory: "0B", "1.5KiB", "64MiB".
std::string BinarySize(uint64_t bytes);
// MemTotal of /proc/meminfo in bytes (0 when it cannot be read).
uint64_t HostMemory();

}  // namespace berth::cli
