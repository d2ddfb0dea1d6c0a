#pragma once

// Tasks.Metrics as containerd serves it: one containerd.types.Metric per task of the call's
// namespace that passes the filters (containerd's fields `id` and `namespace`), its data the
// cgroup's statistics (lib/cgroups: io.containerd.cgroups.v1.Metrics, or v2 on a cgroup v2
// host) read from the cgroup the task's spec names (linux.cgroupsPath in its bundle's
// config.json; the init process's own cgroup when that path is not absolute). A task whose
// cgroup cannot be read is left out (logged unless it is simply gone), as containerd does; a
// malformed filter is InvalidArgument.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "containerd/services/tasks/v1/tasks.pb.h"
#include "lib/base/context.h"
#include "services/execd/task_manager.h"

namespace berth::execd {

absl::Status CollectMetrics(const Context& ctx, TaskManager& tasks,
                            const std::vector<std::string>& filters,
                            ::containerd::services::tasks::v1::MetricsResponse* response);

}  // namespace berth::execd
