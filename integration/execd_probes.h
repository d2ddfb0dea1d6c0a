#pragma once

// What is left on the daemons after a container test, read through their own APIs: execd's
// container records and tasks, snapshotd's snapshots, and the host's mounts. Each read fails
// the current gtest (EXPECT) when the daemon does not answer, and then returns what it has.
// Header-only; link berth_containers_grpc, berth_snapshots and berth_proto.

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "integration/harness.h"
#include "lib/base/context.h"
#include "lib/base/grpc_client.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/snapshots/grpc_snapshotter.h"

namespace berth::integration {

inline Context ProbeContext(const std::string& ns) {
  Context ctx;
  ctx.ns = ns;
  return ctx.WithTimeout(absl::Seconds(60));
}

// The ids of execd's container records in `ns`.
inline std::vector<std::string> ContainerIds(const std::string& execd, const std::string& ns) {
  containers::GrpcContainerStore store(Dial(execd));
  std::vector<std::string> ids;
  auto list = store.List(ProbeContext(ns), {});
  EXPECT_TRUE(list.ok()) << list.status();
  for (const auto& c : list.value_or(std::vector<containers::Container>{})) {
    ids.push_back(c.id);
  }
  return ids;
}

// The container ids of execd's tasks in `ns`.
inline std::vector<std::string> TaskIds(const std::string& execd, const std::string& ns) {
  auto stub = ::containerd::services::tasks::v1::Tasks::NewStub(Dial(execd));
  grpc::ClientContext context;
  context.AddMetadata("containerd-namespace", ns);
  ::containerd::services::tasks::v1::ListTasksRequest request;
  ::containerd::services::tasks::v1::ListTasksResponse response;
  grpc::Status status = stub->List(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::vector<std::string> ids;
  for (const auto& t : response.tasks()) {
    ids.push_back(t.container_id());
  }
  return ids;
}

// The keys and names of snapshotd's snapshots in `ns`, sorted.
inline std::vector<std::string> SnapshotKeys(const std::string& snapshotd, const std::string& ns) {
  snapshots::GrpcSnapshotter store(Dial(snapshotd), "overlayfs");
  std::vector<std::string> keys;
  EXPECT_TRUE(store
                  .Walk(ProbeContext(ns), {},
                        [&](const snapshots::Info& info) {
                          keys.push_back(info.name);
                          return absl::OkStatus();
                        })
                  .ok());
  std::sort(keys.begin(), keys.end());
  return keys;
}

// The lines of /proc/self/mounts that contain any of `parts`.
inline std::vector<std::string> MountsContaining(const std::vector<std::string>& parts) {
  std::vector<std::string> found;
  std::string mounts = ReadFile("/proc/self/mounts").value_or("");
  for (absl::string_view line : absl::StrSplit(mounts, '\n')) {
    if (std::any_of(parts.begin(), parts.end(),
                    [&](const std::string& part) { return absl::StrContains(line, part); })) {
      found.emplace_back(line);
    }
  }
  return found;
}

}  // namespace berth::integration
