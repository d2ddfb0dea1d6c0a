// execd's restart safety and terminals through the Tasks API, with the real execd, berth-shim,
// runc, nats-server and ctr (integration/execd_tasks_fixture.h): exec'd processes known again
// after execd is SIGKILLed, a shim that does not answer holding nothing up, /tasks/exit
// published once when execd dies between the event's commit and the record's, and a terminal
// driven through a pty (ctr tasks start / exec -t) also with a container id whose console
// socket path would not fit in sun_path. Needs root, runc and busybox-static.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "containerd/events/task.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/ctr_records.h"
#include "integration/execd_tasks_fixture.h"
#include "integration/pty_process.h"
#include "lib/base/unique_fd.h"

namespace berth::integration {
namespace {

using ::testing::HasSubstr;
namespace types = ::containerd::v1::types;

class ExecdRestartTest : public ExecdTasksTest {
 protected:
  void TearDown() override {
    for (pid_t pid : stopped_shims_) {
      ::kill(pid, SIGCONT);
    }
    ExecdTasksTest::TearDown();
  }

  // Adds exec `exec_id` running `args` to task `id`, with stdin from `stdin_path` if set.
  absl::Status AddExec(const std::string& id, const std::string& exec_id,
                       const std::vector<std::string>& args, const std::string& stdin_path = "",
                       bool terminal = false, const std::string& stdout_path = "") {
    tasks::ExecProcessRequest exec;
    exec.set_container_id(id);
    exec.set_exec_id(exec_id);
    exec.set_stdin(stdin_path);
    exec.set_stdout(stdout_path);
    exec.set_terminal(terminal);
    nlohmann::json process = {{"args", args},
                              {"cwd", "/"},
                              {"terminal", terminal},
                              {"env", {"PATH=/bin", "TERM=xterm"}},
                              {"user", {{"uid", 0}, {"gid", 0}}}};
    exec.mutable_spec()->set_type_url(
        "types.containerd.io/opencontainers/runtime-spec/1/Process");
    exec.mutable_spec()->set_value(process.dump());
    return Ask(&tasks::Tasks::Stub::Exec, exec).status();
  }

  absl::StatusOr<uint32_t> StartExec(const std::string& id, const std::string& exec_id) {
    tasks::StartRequest start;
    start.set_container_id(id);
    start.set_exec_id(exec_id);
    absl::StatusOr<tasks::StartResponse> started = Ask(&tasks::Tasks::Stub::Start, start);
    if (!started.ok()) return started.status();
    return started->pid();
  }

  absl::StatusOr<types::Process> GetProcess(const std::string& id, const std::string& exec_id) {
    tasks::GetRequest get;
    get.set_container_id(id);
    get.set_exec_id(exec_id);
    absl::StatusOr<tasks::GetResponse> got = Ask(&tasks::Tasks::Stub::Get, get);
    if (!got.ok()) return got.status();
    return got->process();
  }

  absl::Status Kill(const std::string& id, const std::string& exec_id, int signal) {
    tasks::KillRequest kill;
    kill.set_container_id(id);
    kill.set_exec_id(exec_id);
    kill.set_signal(signal);
    return Ask(&tasks::Tasks::Stub::Kill, kill).status();
  }

  absl::StatusOr<uint32_t> DeleteProcess(const std::string& id, const std::string& exec_id) {
    tasks::DeleteProcessRequest del;
    del.set_container_id(id);
    del.set_exec_id(exec_id);
    absl::StatusOr<tasks::DeleteResponse> deleted = Ask(&tasks::Tasks::Stub::DeleteProcess, del);
    if (!deleted.ok()) return deleted.status();
    return deleted->exit_status();
  }

  pid_t ShimPid(const std::string& id) {
    absl::StatusOr<std::string> text = ReadFile(TaskDir(id) + "/shim/shim.pid");
    return text.ok() ? static_cast<pid_t>(std::stoi(*text)) : -1;
  }

  // The distinct Msg-Ids of the /tasks/exit events per "container/process" read off `events`
  // until the /tasks/delete of `sentinel` arrives (the outbox may resend one event after a
  // crash, under the same Msg-Id; published once means one Msg-Id).
  std::map<std::string, std::set<std::string>> ExitEventsUntilDeleteOf(
      BusEvents& events, const std::string& sentinel,
      std::map<std::string, uint32_t>* statuses = nullptr) {
    std::map<std::string, std::set<std::string>> exits;
    std::string subject, msg_id;
    containerd::services::events::v1::Envelope envelope;
    while (events.Next(&subject, &envelope, &msg_id)) {
      if (envelope.topic() == "/tasks/delete") {
        containerd::events::TaskDelete del;
        EXPECT_TRUE(del.ParseFromString(envelope.event().value()));
        if (del.container_id() == sentinel && del.id() == sentinel) {
          break;
        }
      }
      if (envelope.topic() != "/tasks/exit") continue;
      containerd::events::TaskExit exit;
      EXPECT_TRUE(exit.ParseFromString(envelope.event().value()));
      std::string key = absl::StrCat(exit.container_id(), "/", exit.id());
      exits[key].insert(msg_id);
      if (statuses != nullptr) (*statuses)[key] = exit.exit_status();
    }
    return exits;
  }

  std::vector<pid_t> stopped_shims_;
};

TEST_F(ExecdRestartTest, ExecsAreKnownAgainAfterExecdIsKilled) {
  BusEvents events(nats_.url(), kNamespace, "tasks");
  std::string id = Seed("execs", {"sleep", "600"});
  ASSERT_TRUE(CreateAndStart(CreateRequest(id)).ok()) << execd_.ReadLog();
  std::string quick_in = Fifo("quick-in");
  UniqueFd quick_stdin(::open(quick_in.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(AddExec(id, "long", {"sleep", "600"}).ok());
  ASSERT_TRUE(AddExec(id, "quick", {"sh", "-c", "read line; exit 5"}, quick_in).ok());
  absl::StatusOr<uint32_t> long_pid = StartExec(id, "long");
  absl::StatusOr<uint32_t> quick_pid = StartExec(id, "quick");
  ASSERT_TRUE(long_pid.ok() && quick_pid.ok()) << long_pid.status() << quick_pid.status();

  execd_.Kill();
  // One exec exits while execd is down; its shim records the exit.
  ASSERT_EQ(::write(quick_stdin.get(), "\n", 1), 1);
  struct stat st;
  ASSERT_TRUE(berth::testing::WaitFor(
      [&] { return ::stat((TaskDir(id) + "/shim/exit-quick").c_str(), &st) == 0; },
      absl::Seconds(20)));
  StartExecd();

  // The running exec: visible, listed, killable, and its Wait answers its real exit.
  absl::StatusOr<types::Process> got = GetProcess(id, "long");
  ASSERT_TRUE(got.ok()) << got.status() << execd_.ReadLog();
  EXPECT_EQ(got->status(), types::RUNNING);
  EXPECT_EQ(got->pid(), *long_pid);
  tasks::ListPidsRequest pids;
  pids.set_container_id(id);
  absl::StatusOr<tasks::ListPidsResponse> listed = Ask(&tasks::Tasks::Stub::ListPids, pids);
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::set<uint32_t> listed_pids;
  for (const auto& p : listed->processes()) listed_pids.insert(p.pid());
  EXPECT_TRUE(listed_pids.count(*long_pid)) << "ListPids misses the exec's pid";
  CommandResult ps = Ctr(address_, kNamespace, {"tasks", "ps", id});
  EXPECT_EQ(ps.exit_code, 0) << ps.output;
  EXPECT_THAT(ps.output, HasSubstr(absl::StrCat(*long_pid)));

  // The exec that exited meanwhile: its exit code.
  EXPECT_EQ(*Wait(id, "quick"), 5u);
  got = GetProcess(id, "quick");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status(), types::STOPPED);
  EXPECT_EQ(got->exit_status(), 5u);

  // Another crash and restart: nothing is published again, and the execs are still known.
  execd_.Kill();
  StartExecd();
  EXPECT_EQ(*Wait(id, "quick"), 5u);
  ASSERT_TRUE(Kill(id, "long", SIGKILL).ok());
  EXPECT_EQ(*Wait(id, "long"), 128u + SIGKILL);
  EXPECT_EQ(*DeleteProcess(id, "long"), 128u + SIGKILL);
  EXPECT_EQ(*DeleteProcess(id, "quick"), 5u);
  ASSERT_TRUE(Kill(id, "", SIGKILL).ok());
  EXPECT_EQ(*Wait(id), 128u + SIGKILL);
  ASSERT_TRUE(Delete(id).ok());
  ExpectNothingLeft(id);

  std::map<std::string, uint32_t> statuses;
  std::map<std::string, std::set<std::string>> exits = ExitEventsUntilDeleteOf(events, id, &statuses);
  EXPECT_EQ(exits[id + "/quick"].size(), 1u);
  EXPECT_EQ(statuses[id + "/quick"], 5u);
  EXPECT_EQ(exits[id + "/long"].size(), 1u);
  EXPECT_EQ(statuses[id + "/long"], 128u + SIGKILL);
  EXPECT_EQ(exits[id + "/" + id].size(), 1u);
}

TEST_F(ExecdRestartTest, ExitPublishedOnceWhenExecdDiesBetweenEventAndRecord) {
  BusEvents events(nats_.url(), kNamespace, "tasks");
  std::string id = Seed("window", {"sh", "-c", "read line; exit 7"});
  tasks::CreateTaskRequest request = CreateRequest(id);
  request.set_stdin(Fifo("in"));
  UniqueFd in(::open(request.stdin().c_str(), O_RDWR | O_CLOEXEC));
  // This execd dies right after the exit event's commit to the outbox, before the record's.
  execd_.Kill();
  StartExecd({"BERTH_EXECD_CRASH_POINT=exit-event"});
  ASSERT_TRUE(CreateAndStart(request).ok()) << execd_.ReadLog();
  ASSERT_EQ(::write(in.get(), "\n", 1), 1);
  // Dead: a zombie until reaped (Kill reaps it).
  ASSERT_TRUE(berth::testing::WaitFor(
      [&] {
        absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", execd_.pid(), "/stat"));
        return !stat.ok() || absl::StrContains(*stat, ") Z ");
      },
      absl::Seconds(30)))
      << "execd did not reach the crash point: " << execd_.ReadLog();
  execd_.Kill();

  StartExecd();
  EXPECT_EQ(*Wait(id), 7u);
  // And once more: the record's flag holds now.
  execd_.Kill();
  StartExecd();
  EXPECT_EQ(*Wait(id), 7u);
  ASSERT_TRUE(Delete(id).ok());
  ExpectNothingLeft(id);

  std::map<std::string, uint32_t> statuses;
  std::map<std::string, std::set<std::string>> exits = ExitEventsUntilDeleteOf(events, id, &statuses);
  EXPECT_EQ(exits[id + "/" + id].size(), 1u) << "the exit event was published again";
  EXPECT_EQ(statuses[id + "/" + id], 7u);
}

TEST_F(ExecdRestartTest, StoppedShimHoldsNothingUpAndIsReportedUnknownUntilItAnswers) {
  std::string frozen = Seed("frozen", {"sleep", "600"});
  std::string other = Seed("other", {"sleep", "600"});
  absl::StatusOr<uint32_t> frozen_pid = CreateAndStart(CreateRequest(frozen));
  ASSERT_TRUE(frozen_pid.ok()) << frozen_pid.status();
  ASSERT_TRUE(CreateAndStart(CreateRequest(other)).ok());
  pid_t shim = ShimPid(frozen);
  ASSERT_GT(shim, 0);
  // The stopped shim's socket still accepts (the kernel queues the connection), and nothing
  // answers.
  ASSERT_EQ(::kill(shim, SIGSTOP), 0);
  stopped_shims_.push_back(shim);
  execd_.Kill();
  StartExecd({}, {"--reattach-timeout-ms", "1500"});

  // The other container is served as usual.
  EXPECT_EQ(Get(other)->process().status(), types::RUNNING);
  ASSERT_TRUE(Kill(other, "", SIGKILL).ok());
  EXPECT_EQ(*Wait(other), 128u + SIGKILL);
  ASSERT_TRUE(Delete(other).ok());
  ExpectNothingLeft(other);

  // After the reattach timeout the frozen one is UNKNOWN, and calls that need its shim say why.
  ASSERT_TRUE(berth::testing::WaitFor(
      [&] {
        absl::StatusOr<tasks::GetResponse> got = Get(frozen);
        return got.ok() && got->process().status() == types::UNKNOWN;
      },
      absl::Seconds(60)))
      << execd_.ReadLog();
  EXPECT_THAT(execd_.ReadLog(), HasSubstr("does not answer"));
  absl::Status kill = Kill(frozen, "", SIGKILL);
  EXPECT_EQ(kill.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(kill.message(), HasSubstr("has not answered since execd restarted"));
  EXPECT_THAT(kill.message(), HasSubstr("asked again every 1.5s"));  // --reattach-timeout-ms
  CommandResult ls = Ctr(address_, kNamespace, {"tasks", "ls"});
  EXPECT_THAT(ls.output, ::testing::ContainsRegex(absl::StrCat(frozen, " +", *frozen_pid,
                                                               " +UNKNOWN")));

  // Once it answers again, it is the running task it always was.
  ASSERT_EQ(::kill(shim, SIGCONT), 0);
  stopped_shims_.clear();
  ASSERT_TRUE(berth::testing::WaitFor(
      [&] {
        absl::StatusOr<tasks::GetResponse> got = Get(frozen);
        return got.ok() && got->process().status() == types::RUNNING;
      },
      absl::Seconds(60)))
      << execd_.ReadLog();
  ASSERT_TRUE(Kill(frozen, "", SIGKILL).ok());
  EXPECT_EQ(*Wait(frozen), 128u + SIGKILL);
  ASSERT_TRUE(Delete(frozen).ok());
  ExpectNothingLeft(frozen);
}

TEST_F(ExecdRestartTest, CtrDrivesATerminalThroughAPtyWithResize) {
  // A long id: the console socket's full path under the state dir would not fit in sun_path.
  std::string id = Seed(std::string(56, 'l'), {"sh"}, /*terminal=*/true);
  auto spec = execd::testing::BusyboxSpec(id, dir_.Join("busybox"), {"sh"}, true, 0);
  ASSERT_TRUE(spec.ok());
  ASSERT_GT(TaskDir(id).size() + std::string("/shim/console.sock").size(), 108u);
  // ctr sends no rootfs mounts for a container without a snapshot: the spec's root is the
  // busybox tree itself.
  (*spec)["root"]["path"] = dir_.Join("busybox");
  containers::Container c;
  c.id = id;
  ASSERT_TRUE(store_->Delete(ctx_, id).ok());
  c.runtime.name = "io.containerd.runc.v2";
  c.spec = containers::Any{kSpecType, spec->dump()};
  ASSERT_TRUE(store_->Create(ctx_, c).ok());

  PtyProcess ctr({"ctr", "--address", address_, "-n", kNamespace, "tasks", "start", "--fifo-dir",
                  dir_.Join("fifo"), id},
                 80, 24);
  ASSERT_TRUE(ctr.started());
  // The shell's prompt, then what is typed comes back (the container's terminal echoes) with
  // the command's output.
  ASSERT_TRUE(ctr.ReadUntil("# ")) << ctr.output() << execd_.ReadLog();
  ASSERT_TRUE(ctr.Type("echo typed-$((6*7))\n"));
  ASSERT_TRUE(ctr.ReadUntil("echo typed-$((6*7))")) << ctr.output();
  ASSERT_TRUE(ctr.ReadUntil("typed-42")) << ctr.output();
  ASSERT_TRUE(ctr.Type("stty size; tty\n"));
  ASSERT_TRUE(ctr.ReadUntil("24 80")) << ctr.output();
  ASSERT_TRUE(ctr.ReadUntil("/dev/pts/")) << ctr.output();
  // Resized: ctr gets SIGWINCH and calls ResizePty.
  ASSERT_TRUE(ctr.Resize(132, 43));
  ASSERT_TRUE(berth::testing::WaitFor(
      [&] { return ctr.Type("stty size\n") && ctr.ReadUntil("43 132", absl::Seconds(1)); },
      absl::Seconds(30)))
      << ctr.output();

  // An exec with its own terminal, through ctr too.
  PtyProcess exec({"ctr", "--address", address_, "-n", kNamespace, "tasks", "exec", "-t",
                   "--exec-id", "tty-exec", "--fifo-dir", dir_.Join("fifo"), id, "sh"},
                  100, 30);
  ASSERT_TRUE(exec.ReadUntil("# ")) << exec.output() << execd_.ReadLog();
  ASSERT_TRUE(exec.Type("stty size; exit 4\n"));
  ASSERT_TRUE(exec.ReadUntil("30 100")) << exec.output();
  int exec_status = exec.Wait();
  EXPECT_TRUE(WIFEXITED(exec_status) && WEXITSTATUS(exec_status) == 4)
      << exec_status << exec.output();

  ASSERT_TRUE(ctr.Type("exit 3\n"));
  int status = ctr.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status << ctr.output();
  // ctr deletes the task it started once it has exited.
  EXPECT_EQ(Get(id).status().code(), absl::StatusCode::kNotFound);
  ExpectNothingLeft(id);
}

}  // namespace
}  // namespace berth::integration
