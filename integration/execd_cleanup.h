#pragma once

// The end of every test of execd's tasks, whatever happened in it (execd_tasks_test,
// execd_metrics_test). Header-only; link berth_proto, execd_test_bundle.

#include <signal.h>
#include <sys/mount.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "lib/base/context.h"
#include "lib/base/grpc_client.h"
#include "services/execd/test_bundle.h"

namespace berth::integration {

// Kills every process of task `id` in namespace `ns`, waits for it and deletes it through
// `stub` (null when execd is not running; errors ignored), then removes by force what runc,
// the shim and the rootfs mount left under execd's --state `state_dir`.
inline void RemoveTestTask(::containerd::services::tasks::v1::Tasks::Stub* stub,
                           const std::string& ns, const std::string& state_dir,
                           const std::string& id) {
  namespace tasks = ::containerd::services::tasks::v1;
  if (stub != nullptr) {
    auto call = [&](auto method, const auto& request, auto* response) {
      grpc::ClientContext context;
      ApplyContext(Context{ns, ""}.WithTimeout(absl::Seconds(60)), &context);
      context.set_wait_for_ready(true);  // across an execd restart the channel reconnects
      (void)(stub->*method)(&context, request, response);
    };
    tasks::KillRequest kill;
    kill.set_container_id(id);
    kill.set_signal(SIGKILL);
    kill.set_all(true);
    google::protobuf::Empty empty;
    call(&tasks::Tasks::Stub::Kill, kill, &empty);
    tasks::WaitRequest wait;
    wait.set_container_id(id);
    tasks::WaitResponse waited;
    call(&tasks::Tasks::Stub::Wait, wait, &waited);
    tasks::DeleteTaskRequest del;
    del.set_container_id(id);
    tasks::DeleteResponse deleted;
    call(&tasks::Tasks::Stub::Delete, del, &deleted);
  }
  std::string task_dir = absl::StrCat(state_dir, "/tasks/", ns, "/", id);
  execd::testing::ForceCleanup(absl::StrCat(state_dir, "/runc/", ns), id, task_dir + "/shim");
  ::umount2((task_dir + "/rootfs").c_str(), MNT_DETACH);
}

}  // namespace berth::integration
