#pragma once

// The fixture of the tests of execd's Tasks API (execd_tasks_test, execd_restart_test): a real
// execd, berth-shim and runc, a busybox rootfs bind-mounted by execd from the request's rootfs
// mounts, a contentd, a nats-server, and the calls the tests make. TearDown removes what a test
// made (kill, wait, delete; runc delete -f, the mount, the shim) even when it fails. Needs root,
// runc and busybox-static.

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/execd_cleanup.h"
#include "integration/harness.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/testing/testing.h"
#include "services/execd/test_bundle.h"

namespace berth::integration {

namespace tasks = ::containerd::services::tasks::v1;
inline constexpr char kNamespace[] = "tasks-test";
inline constexpr char kSpecType[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

class ExecdTasksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "runc needs root (ctest label: root)";
    }
    ASSERT_TRUE(execd::testing::MakeBusyboxRootfs(dir_.Join("busybox")).ok());
    ASSERT_TRUE(contentd_.Start().ok());
    StartExecd();
  }

  void TearDown() override {
    for (const std::string& id : ids_) {
      RemoveTestTask(execd_.running() ? stub_.get() : nullptr, kNamespace, dir_.Join("state"),
                     id);
    }
  }

  // Starts execd (again); `env` ("NAME=VALUE"...) is added to its environment and `flags` to
  // its command line.
  void StartExecd(const std::vector<std::string>& env = {},
                  const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {"env"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(),
                {berth::testing::BinaryPath("services/execd/execd"), "--root",
                                   dir_.Join("root"), "--state", dir_.Join("state"), "--address", address_,
                 "--contentd-address", contentd_.address(), "--nats-url", nats_.url(),
                 "--log-level", "debug"});
    argv.insert(argv.end(), flags.begin(), flags.end());
    ASSERT_TRUE(execd_.StartServing("execd", argv, address_).ok()) << execd_.ReadLog();
    // A channel of its own per start: one connected to a killed execd fails its next call.
    std::shared_ptr<grpc::Channel> channel = DialOwnConnection(address_);
    store_ = std::make_unique<containers::GrpcContainerStore>(channel);
    stub_ = tasks::Tasks::NewStub(channel);
  }

  std::string TaskDir(const std::string& id) {
    return dir_.Join(absl::StrCat("state/tasks/", kNamespace, "/", id));
  }

  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (tasks::Tasks::Stub::*method)(grpc::ClientContext*,
                                                                 const Request&, Response*),
                    const Request& request, Response* response) {
    grpc::ClientContext call;
    ApplyContext(ctx_.WithTimeout(absl::Seconds(60)), &call);
    call.set_wait_for_ready(true);  // across an execd restart the channel reconnects
    return FromGrpcStatus((stub_.get()->*method)(&call, request, response));
  }

  // Call, returning the response.
  template <typename Response, typename Request>
  absl::StatusOr<Response> Ask(grpc::Status (tasks::Tasks::Stub::*method)(grpc::ClientContext*,
                                                                          const Request&,
                                                                          Response*),
                               const Request& request) {
    Response response;
    absl::Status st = Call(method, request, &response);
    if (!st.ok()) return st;
    return response;
  }

  // A container record running `args` in busybox; its id is unique on this host.
  std::string Seed(const std::string& name, const std::vector<std::string>& args,
                   bool terminal = false, int64_t memory_limit = 0) {
    std::string id = absl::StrCat("berth-", name, "-", RandomHex(4));
    auto spec =
        execd::testing::BusyboxSpec(id, dir_.Join("busybox"), args, terminal, memory_limit);
    EXPECT_TRUE(spec.ok()) << spec.status();
    (*spec)["root"]["path"] = "rootfs";  // the bundle's, where execd mounts the request's rootfs
    containers::Container c;
    c.id = id;
    c.runtime.name = "io.containerd.runc.v2";
    c.spec = containers::Any{kSpecType, spec->dump()};
    absl::Status created = store_->Create(ctx_, c).status();
    EXPECT_TRUE(created.ok()) << created;
    ids_.push_back(id);
    return id;
  }

  tasks::CreateTaskRequest CreateRequest(const std::string& id) {
    tasks::CreateTaskRequest request;
    request.set_container_id(id);
    auto* m = request.add_rootfs();
    m->set_type("bind");
    m->set_source(dir_.Join("busybox"));
    m->add_options("rbind");
    m->add_options("rw");
    return request;
  }

  absl::StatusOr<uint32_t> CreateAndStart(const tasks::CreateTaskRequest& request) {
    tasks::CreateTaskResponse created;
    absl::Status st = Call(&tasks::Tasks::Stub::Create, request, &created);
    if (!st.ok()) return st;
    tasks::StartRequest start;
    start.set_container_id(request.container_id());
    tasks::StartResponse started;
    st = Call(&tasks::Tasks::Stub::Start, start, &started);
    if (!st.ok()) return st;
    return started.pid();
  }

  absl::StatusOr<uint32_t> Wait(const std::string& id, const std::string& exec_id = "") {
    tasks::WaitRequest wait;
    wait.set_container_id(id);
    wait.set_exec_id(exec_id);
    tasks::WaitResponse waited;
    absl::Status st = Call(&tasks::Tasks::Stub::Wait, wait, &waited);
    if (!st.ok()) return st;
    return waited.exit_status();
  }

  absl::StatusOr<tasks::DeleteResponse> Delete(const std::string& id) {
    tasks::DeleteTaskRequest del;
    del.set_container_id(id);
    tasks::DeleteResponse deleted;
    absl::Status st = Call(&tasks::Tasks::Stub::Delete, del, &deleted);
    if (!st.ok()) return st;
    return deleted;
  }

  absl::StatusOr<tasks::GetResponse> Get(const std::string& id) {
    tasks::GetRequest get;
    get.set_container_id(id);
    tasks::GetResponse got;
    absl::Status st = Call(&tasks::Tasks::Stub::Get, get, &got);
    if (!st.ok()) return st;
    return got;
  }

  // Nothing of task `id` is left: no runtime state, no mount, no directory, no cgroup.
  void ExpectNothingLeft(const std::string& id) {
    std::string list = berth::testing::RunCommand(std::vector<std::string>{
        "runc", "--root", dir_.Join(absl::StrCat("state/runc/", kNamespace)), "list", "-q"});
    EXPECT_THAT(list, ::testing::Not(::testing::HasSubstr(id)));
    absl::StatusOr<std::string> mounts = ReadFile("/proc/self/mountinfo");
    ASSERT_TRUE(mounts.ok());
    EXPECT_THAT(*mounts, ::testing::Not(::testing::HasSubstr(TaskDir(id))));
    struct stat st;
    EXPECT_NE(::stat(TaskDir(id).c_str(), &st), 0) << TaskDir(id) << " is left";
    EXPECT_NE(::stat(absl::StrCat("/sys/fs/cgroup/memory/", id).c_str(), &st), 0)
        << "cgroup of " << id << " is left";
  }

  std::string Fifo(const std::string& name) {
    std::string path = dir_.Join(name);
    ::mkfifo(path.c_str(), 0600);
    return path;
  }

  berth::testing::TempDir dir_;
  berth::testing::NatsServer nats_;
  std::string address_ = dir_.Join("execd.sock");
  Contentd contentd_{dir_.path(), Contentd::Options{}};
  DaemonProcess execd_{dir_.path()};
  std::unique_ptr<containers::GrpcContainerStore> store_;
  std::unique_ptr<tasks::Tasks::Stub> stub_;
  std::vector<std::string> ids_;
  const Context ctx_{kNamespace, ""};
};

}  // namespace berth::integration
