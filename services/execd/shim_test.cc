// berth-shim with real runc and a busybox rootfs, driven through execd's ShimClient: exit codes,
// signals, stdio kept apart, stdin, a TTY, exec, the durable exit record, the shim detached from
// its starter, and a refused create leaving nothing behind. Needs root, runc, busybox-static.

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/unique_fd.h"
#include "lib/testing/testing.h"
#include "services/execd/shim_client.h"
#include "services/execd/test_bundle.h"

namespace berth::execd {
namespace {

using ::testing::HasSubstr;
using testing::FifoReader;


class ShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "runc needs root (ctest label: root)";
    }
    id_ = absl::StrCat("berth-shimtest-", RandomHex(6));
    ASSERT_TRUE(testing::MakeBusyboxRootfs(dir_.Join("bundle/rootfs")).ok());
    ASSERT_TRUE(MakeDirs(dir_.Join("shim"), 0700).ok());
    ASSERT_TRUE(MakeDirs(dir_.Join("runc"), 0700).ok());
  }
  void TearDown() override {
    testing::ForceCleanup(dir_.Join("runc"), id_, dir_.Join("shim"));
  }

  ShimLaunch Launch(const std::vector<std::string>& args, bool terminal = false) {
    auto spec = testing::BusyboxSpec(id_, dir_.Join("bundle/rootfs"), args, terminal);
    EXPECT_TRUE(spec.ok()) << spec.status();
    EXPECT_TRUE(WriteFileAtomic(dir_.Join("bundle/config.json"), spec->dump(), 0644).ok());
    ShimLaunch l;
    l.shim_binary = berth::testing::BinaryPath("services/execd/berth-shim");
    l.id = id_;
    l.bundle = dir_.Join("bundle");
    l.state_dir = dir_.Join("shim");
    l.runtime = "runc";
    l.runtime_root = dir_.Join("runc");
    l.terminal = terminal;
    return l;
  }

  std::string Fifo(const std::string& name) {
    std::string path = dir_.Join(name);
    ::mkfifo(path.c_str(), 0600);
    return path;
  }

  berth::testing::TempDir dir_;
  std::string id_;
  Context ctx_;
};

TEST_F(ShimTest, ExitCodeAndSeparateStdoutStderr) {
  ShimLaunch l = Launch({"sh", "-c", "echo to-out; echo to-err >&2; exit 7"});
  l.stdout_path = dir_.Join("out");
  l.stderr_path = dir_.Join("err");
  FifoReader out(l.stdout_path), err(l.stderr_path);
  absl::StatusOr<pid_t> pid = LaunchShim(l);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ShimClient shim(l.state_dir);
  absl::StatusOr<ProcessState> state = shim.State(ctx_, "");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->status, "created");
  EXPECT_EQ(state->pid, *pid);
  ASSERT_TRUE(shim.Start(ctx_).ok());
  absl::StatusOr<ProcessExit> exit = shim.Wait(ctx_, "");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 7u);
  EXPECT_EQ(out.Finish(), "to-out\n");
  EXPECT_EQ(err.Finish(), "to-err\n");
  // The exit was on disk before the answer.
  std::optional<ProcessExit> record = ReadExitRecord(l.state_dir, "");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->status, 7u);
  EXPECT_EQ(record->exited_at, exit->exited_at);
  ASSERT_TRUE(shim.Delete(ctx_, "").ok());
  EXPECT_TRUE(berth::testing::WaitFor([&] { return !testing::ShimAlive(l.state_dir); },
                                      absl::Seconds(10)));
  int code = -1;
  std::string list = berth::testing::RunCommand(
      std::vector<std::string>{"runc", "--root", l.runtime_root, "list", "-q"}, &code);
  EXPECT_EQ(list, "");
}

TEST_F(ShimTest, SignalReachesTheProcess) {
  ShimLaunch l = Launch({"sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done"});
  ASSERT_TRUE(LaunchShim(l).ok());
  ShimClient shim(l.state_dir);
  ASSERT_TRUE(shim.Start(ctx_).ok());
  ASSERT_TRUE(shim.Kill(ctx_, "", 15, false).ok());
  absl::StatusOr<ProcessExit> exit = shim.Wait(ctx_, "");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 42u);
  // Killing what has finished is NotFound, as containerd's.
  EXPECT_EQ(shim.Kill(ctx_, "", 9, false).code(), absl::StatusCode::kNotFound);
}

TEST_F(ShimTest, StdinReachesTheProcessAndCloseIoEndsIt) {
  ShimLaunch l = Launch({"sh", "-c", "cat; echo done"});
  l.stdin_path = Fifo("in");
  l.stdout_path = dir_.Join("out");
  FifoReader out(l.stdout_path);
  // The client's end of stdin, held open read-write so opening never blocks.
  UniqueFd in(::open(l.stdin_path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(LaunchShim(l).ok());
  ShimClient shim(l.state_dir);
  ASSERT_TRUE(shim.Start(ctx_).ok());
  ASSERT_EQ(::write(in.get(), "hello\n", 6), 6);
  ASSERT_TRUE(shim.CloseStdin(ctx_, "").ok());
  absl::StatusOr<ProcessExit> exit = shim.Wait(ctx_, "");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 0u);
  EXPECT_EQ(out.Finish(), "hello\ndone\n");
}

TEST_F(ShimTest, TerminalThroughThePty) {
  ShimLaunch l = Launch({"sh", "-c", "test -t 0 && echo is-a-tty; stty size; read x; echo got:$x"},
                        /*terminal=*/true);
  l.stdin_path = Fifo("in");
  l.stdout_path = dir_.Join("out");
  FifoReader out(l.stdout_path);
  UniqueFd in(::open(l.stdin_path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(LaunchShim(l).ok()) << berth::ReadFile(l.state_dir + "/shim.log").value_or("");
  ShimClient shim(l.state_dir);
  ASSERT_TRUE(shim.Resize(ctx_, "", 91, 33).ok());
  ASSERT_TRUE(shim.Start(ctx_).ok());
  ASSERT_EQ(::write(in.get(), "abc\n", 4), 4);
  absl::StatusOr<ProcessExit> exit = shim.Wait(ctx_, "");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 0u);
  std::string text = out.Finish();
  EXPECT_THAT(text, HasSubstr("is-a-tty"));
  EXPECT_THAT(text, HasSubstr("33 91"));
  EXPECT_THAT(text, HasSubstr("got:abc"));
}

TEST_F(ShimTest, ExecIntoTheRunningContainer) {
  ShimLaunch l = Launch({"sleep", "60"});
  ASSERT_TRUE(LaunchShim(l).ok());
  ShimClient shim(l.state_dir);
  ASSERT_TRUE(shim.Start(ctx_).ok());
  nlohmann::json process = {{"args", {"sh", "-c", "echo exec-out; exit 3"}},
                            {"cwd", "/"},
                            {"env", {"PATH=/bin"}},
                            {"user", {{"uid", 0}, {"gid", 0}}}};
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("exec.json"), process.dump(), 0600).ok());
  std::string out_path = dir_.Join("exec-out");
  FifoReader out(out_path);
  absl::StatusOr<pid_t> pid =
      shim.Exec(ctx_, "e1", dir_.Join("exec.json"), false, "", out_path, "");
  ASSERT_TRUE(pid.ok()) << pid.status();
  absl::StatusOr<ProcessExit> exit = shim.Wait(ctx_, "e1");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 3u);
  EXPECT_EQ(out.Finish(), "exec-out\n");
  EXPECT_EQ(ReadExitRecord(l.state_dir, "e1")->status, 3u);
  // The same exec id again is AlreadyExists until it is deleted.
  EXPECT_EQ(shim.Exec(ctx_, "e1", dir_.Join("exec.json"), false, "", "", "").status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(shim.Delete(ctx_, "e1").ok());
  EXPECT_EQ(shim.State(ctx_, "e1").status().code(), absl::StatusCode::kNotFound);
  // The container itself is still running.
  absl::StatusOr<ProcessState> init = shim.State(ctx_, "");
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->status, "running");
  ASSERT_TRUE(shim.Kill(ctx_, "", 9, true).ok());
  EXPECT_EQ(shim.Wait(ctx_, "")->status, 137u);
}

TEST_F(ShimTest, ShimIsDetachedFromItsStarter) {
  ShimLaunch l = Launch({"sleep", "60"});
  ASSERT_TRUE(LaunchShim(l).ok());
  absl::StatusOr<std::string> pid_text = ReadFile(l.state_dir + "/shim.pid");
  ASSERT_TRUE(pid_text.ok());
  int pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(*pid_text), &pid));
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  ASSERT_TRUE(stat.ok());
  // After "(comm) S": ppid, pgrp, session.
  std::vector<std::string> f = absl::StrSplit(stat->substr(stat->rfind(')') + 2), ' ');
  EXPECT_NE(f[1], std::to_string(::getpid()));
  EXPECT_EQ(f[3], std::to_string(pid)) << "the shim leads its own session";
  ShimClient shim(l.state_dir);
  ASSERT_TRUE(shim.Start(ctx_).ok());
  ASSERT_TRUE(shim.Kill(ctx_, "", 9, false).ok());
  ASSERT_TRUE(shim.Wait(ctx_, "").ok());
}

TEST_F(ShimTest, MissingCommandIsTheRuntimesErrorAndLeavesNothing) {
  ShimLaunch l = Launch({"/no-such-command"});
  absl::StatusOr<pid_t> pid = LaunchShim(l);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(pid.status().message(), HasSubstr("no-such-command"));
  // The shim answers, then exits.
  EXPECT_TRUE(berth::testing::WaitFor([&] { return !testing::ShimAlive(l.state_dir); },
                                      absl::Seconds(10)));
  std::string list = berth::testing::RunCommand(
      std::vector<std::string>{"runc", "--root", l.runtime_root, "list", "-q"});
  EXPECT_EQ(list, "");
  struct stat st;
  EXPECT_NE(::stat(absl::StrCat("/sys/fs/cgroup/memory/", id_).c_str(), &st), 0)
      << "the container's cgroup was left behind";
}

TEST_F(ShimTest, MissingRuntimeBinaryIsAClearError) {
  ShimLaunch l = Launch({"true"});
  l.runtime = "/nonexistent/runc";
  absl::StatusOr<pid_t> pid = LaunchShim(l);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("/nonexistent/runc"));
  // The shim answers, then exits.
  EXPECT_TRUE(berth::testing::WaitFor([&] { return !testing::ShimAlive(l.state_dir); },
                                      absl::Seconds(10)));
}

}  // namespace
}  // namespace berth::execd
