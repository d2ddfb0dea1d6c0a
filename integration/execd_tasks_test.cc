// execd's Tasks API (containerd's) against the real execd binary, berth-shim and runc, with a
// busybox rootfs bind-mounted by execd from the request's rootfs mounts, events read off a
// real nats-server, and ctr pointed at execd's socket. Each test removes what it made (runc
// delete -f, the mount, the shim) even when it fails. Needs root, runc and busybox-static.

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "containerd/events/task.pb.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/ctr_records.h"
#include "integration/execd_tasks_fixture.h"
#include "integration/harness.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/unique_fd.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/testing/testing.h"
#include "services/execd/test_bundle.h"

namespace berth::integration {
namespace {

using ::testing::HasSubstr;
using execd::testing::FifoReader;

TEST_F(ExecdTasksTest, RunsToExitWithSeparateStreamsAndEvents) {
  BusEvents events(nats_.url(), kNamespace, "tasks");
  std::string id = Seed("exit", {"sh", "-c", "echo to-out; echo to-err >&2; exit 3"});
  tasks::CreateTaskRequest request = CreateRequest(id);
  request.set_stdout(dir_.Join("out"));
  request.set_stderr(dir_.Join("err"));
  FifoReader out(request.stdout()), err(request.stderr());
  absl::StatusOr<uint32_t> pid = CreateAndStart(request);
  ASSERT_TRUE(pid.ok()) << pid.status() << execd_.ReadLog();
  absl::StatusOr<uint32_t> code = Wait(id);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 3u);
  EXPECT_EQ(out.Finish(), "to-out\n");
  EXPECT_EQ(err.Finish(), "to-err\n");
  absl::StatusOr<tasks::GetResponse> got = Get(id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->process().status(), containerd::v1::types::STOPPED);
  EXPECT_EQ(got->process().exit_status(), 3u);
  absl::StatusOr<tasks::DeleteResponse> deleted = Delete(id);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 3u);
  EXPECT_EQ(deleted->pid(), *pid);
  ExpectNothingLeft(id);
  EXPECT_EQ(Get(id).status().code(), absl::StatusCode::kNotFound);

  std::vector<std::string> topics;
  std::string subject;
  containerd::services::events::v1::Envelope envelope;
  for (int i = 0; i < 4 && events.Next(&subject, &envelope); ++i) {
    topics.push_back(envelope.topic());
    if (envelope.topic() == "/tasks/exit") {
      containerd::events::TaskExit exit;
      ASSERT_TRUE(exit.ParseFromString(envelope.event().value()));
      EXPECT_EQ(exit.container_id(), id);
      EXPECT_EQ(exit.exit_status(), 3u);
      EXPECT_EQ(exit.pid(), *pid);
    }
  }
  EXPECT_THAT(topics,
              ::testing::ElementsAre("/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"));
}

TEST_F(ExecdTasksTest, BadInputIsRefusedAndLeavesNothing) {
  EXPECT_EQ(CreateAndStart(CreateRequest("no-such-container")).status().code(),
            absl::StatusCode::kNotFound);

  std::string missing = Seed("missing", {"/no-such-command"});
  absl::StatusOr<uint32_t> pid = CreateAndStart(CreateRequest(missing));
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(pid.status().message(), HasSubstr("no-such-command"));
  ExpectNothingLeft(missing);
  EXPECT_EQ(Get(missing).status().code(), absl::StatusCode::kNotFound);

  std::string twice = Seed("twice", {"sleep", "60"});
  ASSERT_TRUE(CreateAndStart(CreateRequest(twice)).ok());
  tasks::CreateTaskResponse created;
  EXPECT_EQ(Call(&tasks::Tasks::Stub::Create, CreateRequest(twice), &created).code(),
            absl::StatusCode::kAlreadyExists);
  // A running task cannot be deleted.
  EXPECT_EQ(Delete(twice).status().code(), absl::StatusCode::kFailedPrecondition);

  std::string bad_runtime = Seed("runtime", {"true"});
  tasks::CreateTaskRequest request = CreateRequest(bad_runtime);
  request.set_runtime_path("/nonexistent/runc");
  absl::Status st = Call(&tasks::Tasks::Stub::Create, request, &created);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("/nonexistent/runc"));
  ExpectNothingLeft(bad_runtime);

  tasks::CheckpointTaskRequest checkpoint;
  checkpoint.set_container_id(twice);
  tasks::CheckpointTaskResponse checkpointed;
  st = Call(&tasks::Tasks::Stub::Checkpoint, checkpoint, &checkpointed);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(st.message(), HasSubstr("not implemented"));
}

TEST_F(ExecdTasksTest, CtrListsAndKillsATask) {
  std::string id = Seed("ctr", {"sleep", "600"});
  absl::StatusOr<uint32_t> pid = CreateAndStart(CreateRequest(id));
  ASSERT_TRUE(pid.ok()) << pid.status();
  CommandResult ls = Ctr(address_, kNamespace, {"tasks", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(ls.output, ::testing::ContainsRegex(absl::StrCat(id, " +", *pid, " +RUNNING")));
  // sleep is the container's pid 1, which ignores a SIGTERM it has no handler for.
  CommandResult kill = Ctr(address_, kNamespace, {"tasks", "kill", "-s", "SIGKILL", id});
  ASSERT_EQ(kill.exit_code, 0) << kill.output;
  absl::StatusOr<uint32_t> code = Wait(id);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128u + SIGKILL);
  ls = Ctr(address_, kNamespace, {"tasks", "ls"});
  EXPECT_THAT(ls.output, ::testing::ContainsRegex(absl::StrCat(id, " +", *pid, " +STOPPED")));
  CommandResult rm = Ctr(address_, kNamespace, {"tasks", "rm", id});
  EXPECT_EQ(rm.exit_code, 0) << rm.output;
  ExpectNothingLeft(id);
}

TEST_F(ExecdTasksTest, ExecPauseResumeAndStdin) {
  std::string id = Seed("exec", {"sh", "-c", "read line; echo got:$line; exit 4"});
  tasks::CreateTaskRequest request = CreateRequest(id);
  request.set_stdin(Fifo("in"));
  request.set_stdout(dir_.Join("out"));
  FifoReader out(request.stdout());
  UniqueFd in(::open(request.stdin().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(CreateAndStart(request).ok());

  tasks::ExecProcessRequest exec;
  exec.set_container_id(id);
  exec.set_exec_id("probe");
  exec.set_stdout(dir_.Join("exec-out"));
  FifoReader exec_out(exec.stdout());
  nlohmann::json process = {{"args", {"sh", "-c", "echo from-exec; exit 6"}},
                            {"cwd", "/"},
                            {"env", {"PATH=/bin"}},
                            {"user", {{"uid", 0}, {"gid", 0}}}};
  exec.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
  exec.mutable_spec()->set_value(process.dump());
  google::protobuf::Empty empty;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Exec, exec, &empty).ok());
  EXPECT_EQ(Call(&tasks::Tasks::Stub::Exec, exec, &empty).code(),
            absl::StatusCode::kAlreadyExists);
  // containerd's clients (ctr tasks exec, the Go client's Process.Wait) wait before they start:
  // a Wait on the exec before its Start waits (here until its deadline), not NotFound.
  {
    grpc::ClientContext call;
    ApplyContext(ctx_.WithTimeout(absl::Milliseconds(500)), &call);
    tasks::WaitRequest early;
    early.set_container_id(id);
    early.set_exec_id("probe");
    tasks::WaitResponse waited;
    EXPECT_EQ(FromGrpcStatus(stub_->Wait(&call, early, &waited)).code(),
              absl::StatusCode::kDeadlineExceeded);
  }
  absl::StatusOr<uint32_t> waited = absl::UnknownError("not waited");
  std::thread waiter([&] { waited = Wait(id, "probe"); });
  tasks::StartRequest start;
  start.set_container_id(id);
  start.set_exec_id("probe");
  tasks::StartResponse started;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Start, start, &started).ok());
  waiter.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(*waited, 6u);
  EXPECT_EQ(*Wait(id, "probe"), 6u);
  EXPECT_EQ(exec_out.Finish(), "from-exec\n");
  tasks::DeleteProcessRequest delete_exec;
  delete_exec.set_container_id(id);
  delete_exec.set_exec_id("probe");
  tasks::DeleteResponse exec_deleted;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::DeleteProcess, delete_exec, &exec_deleted).ok());
  EXPECT_EQ(exec_deleted.exit_status(), 6u);

  tasks::PauseTaskRequest pause;
  pause.set_container_id(id);
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Pause, pause, &empty).ok());
  EXPECT_EQ(Get(id)->process().status(), containerd::v1::types::PAUSED);
  tasks::ResumeTaskRequest resume;
  resume.set_container_id(id);
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Resume, resume, &empty).ok());
  EXPECT_EQ(Get(id)->process().status(), containerd::v1::types::RUNNING);

  tasks::ListPidsRequest pids;
  pids.set_container_id(id);
  tasks::ListPidsResponse listed;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::ListPids, pids, &listed).ok());
  EXPECT_GE(listed.processes_size(), 1);

  ASSERT_EQ(::write(in.get(), "hello\n", 6), 6);
  EXPECT_EQ(*Wait(id), 4u);
  EXPECT_EQ(out.Finish(), "got:hello\n");
  ASSERT_TRUE(Delete(id).ok());
  ExpectNothingLeft(id);
}

TEST_F(ExecdTasksTest, ExecdKilledWhileContainersRunReattachesAndReportsExitsOnce) {
  BusEvents events(nats_.url(), kNamespace, "tasks");
  std::string keeps = Seed("keeps", {"sleep", "600"});
  std::string exits = Seed("exits", {"sh", "-c", "read line; exit 5"});
  ASSERT_TRUE(CreateAndStart(CreateRequest(keeps)).ok());
  tasks::CreateTaskRequest request = CreateRequest(exits);
  request.set_stdin(Fifo("in"));
  UniqueFd in(::open(request.stdin().c_str(), O_RDWR | O_CLOEXEC));
  absl::StatusOr<uint32_t> exits_pid = CreateAndStart(request);
  ASSERT_TRUE(exits_pid.ok()) << exits_pid.status();

  execd_.Kill();
  EXPECT_TRUE(execd::testing::ShimAlive(TaskDir(keeps) + "/shim"));
  EXPECT_TRUE(execd::testing::ShimAlive(TaskDir(exits) + "/shim"));
  // One container exits while execd is down; its shim records the exit.
  ASSERT_EQ(::write(in.get(), "\n", 1), 1);
  struct stat st;
  ASSERT_TRUE(berth::testing::WaitFor(
      [&] { return ::stat((TaskDir(exits) + "/shim/exit").c_str(), &st) == 0; },
      absl::Seconds(20)));

  StartExecd();
  absl::StatusOr<uint32_t> code = Wait(exits);
  ASSERT_TRUE(code.ok()) << code.status() << execd_.ReadLog();
  EXPECT_EQ(*code, 5u);
  EXPECT_EQ(Get(keeps)->process().status(), containerd::v1::types::RUNNING);
  // Another crash and restart publishes nothing again.
  execd_.Kill();
  StartExecd();
  EXPECT_EQ(*Wait(exits), 5u);
  EXPECT_EQ(Get(keeps)->process().status(), containerd::v1::types::RUNNING);

  // The sentinel: the other container's exit, published after anything the restarts sent.
  tasks::KillRequest kill;
  kill.set_container_id(keeps);
  kill.set_signal(SIGKILL);
  google::protobuf::Empty empty;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Kill, kill, &empty).ok());
  EXPECT_EQ(*Wait(keeps), 128u + SIGKILL);
  // The outbox delivers at least once: an event sent just before a crash is sent again after
  // it, under the same Nats-Msg-Id, which JetStream (eventd's stream) drops. Published once
  // means one Msg-Id.
  std::map<std::string, std::set<std::string>> exit_events;
  std::string subject, msg_id;
  containerd::services::events::v1::Envelope envelope;
  while (exit_events[keeps].empty() && events.Next(&subject, &envelope, &msg_id)) {
    if (envelope.topic() != "/tasks/exit") continue;
    containerd::events::TaskExit exit;
    ASSERT_TRUE(exit.ParseFromString(envelope.event().value()));
    exit_events[exit.container_id()].insert(msg_id);
    if (exit.container_id() == exits) {
      EXPECT_EQ(exit.exit_status(), 5u);
      EXPECT_EQ(exit.pid(), *exits_pid);
    }
  }
  EXPECT_EQ(exit_events[exits].size(), 1u);
  EXPECT_EQ(exit_events[keeps].size(), 1u);
  for (const std::string& id : {keeps, exits}) {
    ASSERT_TRUE(Delete(id).ok());
    ExpectNothingLeft(id);
  }
}

TEST_F(ExecdTasksTest, KilledShimIsReportedExitedAndLeavesNothing) {
  std::string id = Seed("shimkill", {"sleep", "600"});
  absl::StatusOr<uint32_t> pid = CreateAndStart(CreateRequest(id));
  ASSERT_TRUE(pid.ok()) << pid.status();
  absl::StatusOr<std::string> shim_pid = ReadFile(TaskDir(id) + "/shim/shim.pid");
  ASSERT_TRUE(shim_pid.ok());
  ASSERT_EQ(::kill(std::stoi(*shim_pid), SIGKILL), 0);
  absl::StatusOr<uint32_t> code = Wait(id);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 255u);
  EXPECT_THAT(execd_.ReadLog(), HasSubstr("its shim died"));
  // The container's process is gone (killed; at most a zombie until pid 1 reaps it).
  EXPECT_TRUE(berth::testing::WaitFor(
      [&] {
        absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", *pid, "/stat"));
        return !stat.ok() || stat->find(") Z ") != std::string::npos;
      },
      absl::Seconds(20)));
  absl::StatusOr<tasks::DeleteResponse> deleted = Delete(id);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 255u);
  ExpectNothingLeft(id);
}

TEST_F(ExecdTasksTest, FiftyContainersAtOnceAllCleanedUp) {
  constexpr int kContainers = 50;
  std::vector<std::string> ids;
  for (int i = 0; i < kContainers; ++i) {
    ids.push_back(Seed(absl::StrCat("many", i), {"sh", "-c", absl::StrCat("read line; exit ", i % 7)}));
  }
  std::vector<UniqueFd> stdins(kContainers);
  std::vector<absl::Status> started(kContainers);
  std::vector<std::thread> threads;
  for (int t = 0; t < 5; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kContainers; i += 5) {
        tasks::CreateTaskRequest request = CreateRequest(ids[i]);
        request.set_stdin(Fifo(absl::StrCat("in", i)));
        stdins[i].Reset(::open(request.stdin().c_str(), O_RDWR | O_CLOEXEC));
        started[i] = CreateAndStart(request).status();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kContainers; ++i) {
    ASSERT_TRUE(started[i].ok()) << ids[i] << ": " << started[i];
  }
  // All 50 run at once.
  tasks::ListTasksRequest list;
  tasks::ListTasksResponse listed;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::List, list, &listed).ok());
  int running = 0;
  for (const auto& p : listed.tasks()) {
    running += p.status() == containerd::v1::types::RUNNING;
  }
  EXPECT_EQ(running, kContainers);
  for (int i = 0; i < kContainers; ++i) {
    ASSERT_EQ(::write(stdins[i].get(), "\n", 1), 1);
  }
  for (int i = 0; i < kContainers; ++i) {
    absl::StatusOr<uint32_t> code = Wait(ids[i]);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, static_cast<uint32_t>(i % 7));
    ASSERT_TRUE(Delete(ids[i]).ok());
  }
  for (const std::string& id : ids) {
    ExpectNothingLeft(id);
  }
}

TEST_F(ExecdTasksTest, MemoryLimitTriggersAnOomEvent) {
  BusEvents events(nats_.url(), kNamespace, "tasks");
  // The shell keeps the command's output in memory: far more than the limit.
  std::string id = Seed("oom", {"sh", "-c", "x=$(yes | head -c 200000000); echo survived"},
                        /*terminal=*/false, 32 << 20);
  ASSERT_TRUE(CreateAndStart(CreateRequest(id)).ok());
  absl::StatusOr<uint32_t> code = Wait(id);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128u + SIGKILL);
  bool oom = false;
  std::string subject;
  containerd::services::events::v1::Envelope envelope;
  // /tasks/exit comes after the OOM (the kill ended the process).
  bool exited = false;
  while (!exited && events.Next(&subject, &envelope)) {
    if (envelope.topic() == "/tasks/oom") {
      containerd::events::TaskOOM event;
      ASSERT_TRUE(event.ParseFromString(envelope.event().value()));
      EXPECT_EQ(event.container_id(), id);
      oom = true;
    }
    exited = envelope.topic() == "/tasks/exit";
  }
  if (!oom) {
    // The OOM event is published by another thread than the exit's: wait for it a little more.
    oom = events.Next(&subject, &envelope) && envelope.topic() == "/tasks/oom";
  }
  EXPECT_TRUE(oom) << execd_.ReadLog();
  ASSERT_TRUE(Delete(id).ok());
  ExpectNothingLeft(id);
}

}  // namespace
}  // namespace berth::integration
