#pragma once

// A cgroup's statistics as containerd reports them in Tasks.Metrics: the messages of
// github.com/containerd/cgroups (proto/containerd/cgroups/), filled from the same files
// containerd's cgroups library reads, with the same units and conventions (cgroup v1 times in
// nanoseconds, v2 in microseconds; an unlimited v1 pids.max reads 0, an unlimited v2 limit
// UINT64_MAX). A file a kernel does not have (memsw without swap accounting, hugetlb without
// huge pages) leaves its fields 0; a line that does not parse is skipped. Thread-compatible:
// plain functions over the filesystem.

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include <google/protobuf/any.pb.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "containerd/cgroups/stats/v1/metrics.pb.h"
#include "containerd/cgroups/v2/stats/metrics.pb.h"

namespace berth::cgroups {

namespace v1 = ::io::containerd::cgroups::v1;
namespace v2 = ::io::containerd::cgroups::v2;

// The Any type URLs containerd's typeurl gives these messages (their proto names, no prefix):
// what ctr's `tasks metrics` and the Go client decode by.
inline constexpr char kV1MetricsType[] = "io.containerd.cgroups.v1.Metrics";
inline constexpr char kV2MetricsType[] = "io.containerd.cgroups.v2.Metrics";
inline constexpr char kCgroupRoot[] = "/sys/fs/cgroup";

// As containerd's cgroups.Mode(): unified when `root` is a cgroup2 mount, hybrid when
// root/unified is (v1 controllers, an empty v2 tree beside), else legacy.
enum class Mode { kLegacy, kHybrid, kUnified };
Mode DetectMode(const std::string& root = kCgroupRoot);

// A cgroup's path within each hierarchy, by v1 controller name ("pids", "memory", ...); the
// key "" is the unified (v2) hierarchy's.
using CgroupPaths = std::map<std::string, std::string, std::less<>>;

// v1: the cgroup `path` (absolute within each hierarchy, e.g. "/default/web") in the
// hierarchies mounted at root/<controller>: pids, cpu and cpuacct, memory (memory.stat, the
// usage/limit/max/failcnt of memory, memsw, kmem and kmem.tcp, oom_control), blkio (the CFQ
// recursive files, else the throttle ones), hugetlb. A controller not mounted, or without
// the cgroup, is left out; NotFound when no controller has it.
absl::StatusOr<v1::Metrics> ReadV1(const std::string& root, const std::string& path);
// The same with a path per controller (a process's cgroups differ between hierarchies); a
// controller without an entry is left out.
absl::StatusOr<v1::Metrics> ReadV1(const std::string& root, const CgroupPaths& paths);

// v2: the cgroup directory `dir`: memory.current, memory.max, memory.swap.*, memory.stat,
// memory.events, cpu.stat, pids.current and pids.max, io.stat, hugetlb.<size>.current|max.
// NotFound when `dir` does not exist.
absl::StatusOr<v2::Metrics> ReadV2(const std::string& dir);

// The cgroups of process `pid` from <proc>/<pid>/cgroup, by controller ("" for the `0::` line
// of the unified hierarchy). NotFound when the process is gone.
absl::StatusOr<CgroupPaths> ProcessCgroups(pid_t pid, const std::string& proc = "/proc");

// A container's statistics as containerd's runc shim reports them: an Any (type URL above)
// of the v2 Metrics on a unified host, else of the v1 ones. `cgroups_path` is the spec's
// linux.cgroupsPath, where runc put the cgroup when it is absolute; otherwise (empty,
// relative to runc's own cgroup, or systemd's slice:prefix:name) they are the cgroups process
// `pid` is in, one per controller.
absl::StatusOr<google::protobuf::Any> ContainerMetrics(const std::string& cgroups_path,
                                                       pid_t pid,
                                                       const std::string& root = kCgroupRoot);

}  // namespace berth::cgroups
