// `berth run` and the container commands end to end (issue 11 item 7): the busybox test image
// (integration/scripts/make-busybox-image.sh) pushed into a real docker-registry, pulled by
// imaged into contentd and snapshotd, and run with real runc through execd. Each test checks
// what the user sees (exit code, stdout and stderr apart, stdin, a terminal) and what is left
// afterwards through the daemons' own APIs: container records, tasks, snapshots, mounts and
// the CLI's FIFO directories.

#include <fcntl.h>
#include <pty.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "integration/execd_probes.h"
#include "integration/harness.h"
#include "integration/pty_process.h"
#include "integration/snapshotd_harness.h"
#include "lib/base/grpc_client.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

namespace tasks = ::containerd::services::tasks::v1;

Context Ctx() {
  Context ctx;
  ctx.ns = "default";
  return ctx.WithTimeout(absl::Seconds(60));
}

struct Output {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class BerthRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int code = 0;
    std::string made = testing::RunCommand(
        {testing::SourcePath("integration/scripts/make-busybox-image.sh"), dir_.Join("layout")},
        &code);
    ASSERT_EQ(code, 0) << made;
    ASSERT_TRUE(registry_.Start().ok()) << registry_.ReadLog();
    absl::Status pushed = registry_.Push(dir_.Join("layout"), "latest", "test/busybox");
    ASSERT_TRUE(pushed.ok()) << pushed;
    ASSERT_TRUE(contentd_.Start().ok()) << contentd_.ReadLog();
    ASSERT_TRUE(snapshotd_.Start().ok()) << snapshotd_.ReadLog();
    absl::Status started = imaged_.StartServing(
        "imaged",
        {testing::BinaryPath("services/imaged/imaged"), "--root", dir_.Join("imaged-root"),
         "--state", dir_.Join("imaged-state"), "--address", imaged_address_,
         "--contentd-address", contentd_.address(), "--snapshotd-address",
         snapshotd_.address()},
        imaged_address_);
    ASSERT_TRUE(started.ok()) << started;
    started = execd_.StartServing(
        "execd",
        {testing::BinaryPath("services/execd/execd"), "--root", dir_.Join("execd-root"),
         "--state", dir_.Join("execd-state"), "--address", execd_address_,
         "--contentd-address", contentd_.address(), "--log-level", "debug"},
        execd_address_);
    ASSERT_TRUE(started.ok()) << started;
    image_ = absl::StrCat(registry_.host(), "/test/busybox:latest");
    Output pull = Berth({"pull", "--insecure-registry", registry_.host(), image_});
    ASSERT_EQ(pull.exit_code, 0) << pull.out << pull.err;
    run_dir_ = dir_.Join("cli");
    setenv("BERTH_RUN_DIR", run_dir_.c_str(), 1);
    baseline_snapshots_ = Snapshots();
  }

  void TearDown() override {
    // Nothing a test made may outlive it: kill and remove every container left.
    for (const std::string& id : Containers()) {
      Berth({"rm", "-f", id});
    }
  }

  // Runs berth with the daemons' addresses; stdout and stderr apart. `input` is its stdin.
  Output Berth(const std::vector<std::string>& args, const std::string& input = "") {
    std::vector<std::string> argv = BerthArgv(args);
    std::string in = dir_.Join("stdin"), out = dir_.Join("stdout"), err = dir_.Join("stderr");
    std::ofstream(in) << input;
    std::vector<std::string> quoted;
    for (const std::string& a : argv) {
      std::string q = "'";
      for (char c : a) {
        q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      }
      quoted.push_back(q + "'");
    }
    Output result;
    testing::RunCommand(absl::StrCat(absl::StrJoin(quoted, " "), " <", in, " >", out, " 2>", err),
                        &result.exit_code);
    result.out = ReadFile(out).value_or("");
    result.err = ReadFile(err).value_or("");
    return result;
  }

  // berth's command line with the daemons' addresses, then `args`.
  std::vector<std::string> BerthArgv(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        testing::BinaryPath("tools/berth/berth"), "--contentd-address", contentd_.address(),
        "--snapshotd-address", snapshotd_.address(), "--imaged-address", imaged_address_,
        "--execd-address", execd_address_, "--timeout", "120s"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // `berth logs NAME` once it contains `text` (polled up to 20 s); the last output either way.
  std::string LogsOnceContaining(const std::string& name, const std::string& text) {
    std::string logs;
    testing::WaitFor(
        [&] {
          logs = Berth({"logs", name}).out;
          return absl::StrContains(logs, text);
        },
        absl::Seconds(20));
    return logs;
  }

  std::vector<std::string> Containers() { return ContainerIds(execd_address_, "default"); }
  std::vector<std::string> Snapshots() { return SnapshotKeys(snapshotd_.address(), "default"); }
  std::vector<std::string> Tasks() { return TaskIds(execd_address_, "default"); }
  // Mounts below the snapshotd root or the CLI's temporary user-lookup mounts.
  std::vector<std::string> OurMounts() { return MountsContaining({dir_.path(), "berth-rootfs-"}); }

  std::vector<std::string> FifoDirs() {
    std::vector<std::string> dirs;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(run_dir_ + "/fifo", ec)) {
      dirs.push_back(entry.path().string());
    }
    return dirs;
  }

  // Nothing left by a container that is gone: no record, task, snapshot, mount or FIFO dir.
  void ExpectNothingLeft() {
    EXPECT_TRUE(Containers().empty()) << absl::StrJoin(Containers(), ", ");
    EXPECT_TRUE(Tasks().empty()) << absl::StrJoin(Tasks(), ", ");
    EXPECT_EQ(Snapshots(), baseline_snapshots_);
    EXPECT_TRUE(OurMounts().empty()) << absl::StrJoin(OurMounts(), "\n");
    EXPECT_TRUE(FifoDirs().empty()) << absl::StrJoin(FifoDirs(), ", ");
  }

  testing::TempDir dir_;
  Registry registry_{dir_.path()};
  Contentd contentd_{dir_.path(), Contentd::Options{}};
  Snapshotd snapshotd_{dir_.path(), [this] {
                         Snapshotd::Options options;
                         options.contentd_address = contentd_.address();
                         return options;
                       }()};
  std::string imaged_address_ = dir_.Join("imaged.sock");
  std::string execd_address_ = dir_.Join("execd.sock");
  DaemonProcess imaged_{dir_.path()};
  DaemonProcess execd_{dir_.path()};
  std::string image_;
  std::string run_dir_;
  std::vector<std::string> baseline_snapshots_;
};

// ---- bad input: refused before anything is made, or everything made is removed

TEST_F(BerthRunTest, UnknownImageIsNotFoundAndLeavesNothing) {
  Output run = Berth({"run", "--rm", absl::StrCat(registry_.host(), "/test/nosuch:latest"), "true"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_TRUE(absl::StrContains(run.err, "not found")) << run.err;
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, InvalidNameIsAUsageErrorAndLeavesNothing) {
  Output run = Berth({"run", "--rm", "--name", "bad name!", image_, "true"});
  EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
  EXPECT_TRUE(absl::StrContains(run.err, "container name")) << run.err;
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, RelativeOrDotDotVolumeIsRefusedAndLeavesNothing) {
  for (const std::string& volume :
       {std::string("relative/dir:/data"), dir_.Join("a/../../etc") + ":/data",
        dir_.path() + ":/data/../etc", dir_.path() + ":/data:rx"}) {
    Output run = Berth({"run", "--rm", "-v", volume, image_, "true"});
    EXPECT_EQ(run.exit_code, 2) << volume << ": " << run.out << run.err;
    EXPECT_TRUE(absl::StrContains(run.err, "volume")) << run.err;
  }
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, UnknownUserNameRemovesTheSnapshotItMade) {
  // The name can only be looked up once the snapshot exists (mounted read-only for the lookup):
  // the failure comes after Prepare, and the snapshot goes again.
  Output run = Berth({"run", "--rm", "--user", "nosuchuser", image_, "true"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_TRUE(absl::StrContains(run.err, "nosuchuser")) << run.err;
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, DuplicateNameIsAlreadyExistsAndKeepsTheFirst) {
  Output create = Berth({"create", "--name", "dup", image_, "true"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  std::vector<std::string> snapshots = Snapshots();
  Output run = Berth({"run", "--rm", "--name", "dup", image_, "true"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_TRUE(absl::StrContains(run.err, "already exists")) << run.err;
  EXPECT_EQ(Containers(), std::vector<std::string>{"dup"});
  EXPECT_EQ(Snapshots(), snapshots);  // the first container's snapshot is still there
}

TEST_F(BerthRunTest, CreateMakesARootedSnapshotAndRecordThatRmRemoves) {
  Output create = Berth({"create", "--name", "made", "-e", "A=1", image_, "echo", "hi"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  EXPECT_EQ(absl::StripAsciiWhitespace(create.out), "made");
  snapshots::GrpcSnapshotter store(Dial(snapshotd_.address()), "overlayfs");
  auto info = store.Stat(Ctx(), "made");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kind, snapshots::Kind::kActive);
  EXPECT_EQ(info->labels.count("containerd.io/gc.root"), 1u);
  containers::GrpcContainerStore records(Dial(execd_address_));
  auto record = records.Get(Ctx(), "made");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->snapshot_key, "made");
  EXPECT_EQ(record->spec.type_url, "types.containerd.io/opencontainers/runtime-spec/1/Spec");
  EXPECT_TRUE(absl::StrContains(record->spec.value, "\"A=1\"")) << record->spec.value;
  EXPECT_TRUE(absl::StrContains(record->spec.value, "[\"echo\",\"hi\"]")) << record->spec.value;

  Output rm = Berth({"rm", "made"});
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  ExpectNothingLeft();
}

// ---- running containers

TEST_F(BerthRunTest, ExitCodeStdoutAndStderrApartAndRmLeavesNothing) {
  Output run = Berth({"run", "--rm", image_, "sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(run.exit_code, 7) << run.err;
  EXPECT_EQ(run.out, "out\n");
  EXPECT_EQ(run.err, "err\n");
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, StdinReachesTheProcessAndEndsIt) {
  Output run = Berth({"run", "--rm", "-i", image_, "sh", "-c", "tr a-z A-Z; echo done"},
                     "hello\nworld\n");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "HELLO\nWORLD\ndone\n");
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, ImageConfigFlagsAndUserNamesReachTheProcess) {
  std::string share = dir_.Join("share");
  ASSERT_EQ(mkdir(share.c_str(), 0755), 0);
  std::ofstream(share + "/from-host") << "x";
  Output run = Berth({"run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp", "--user", "app",
                      "--hostname", "boxy", "-v", share + ":/host:ro", image_, "sh", "-c",
                      "echo $GREETING; pwd; id -u; id -G; hostname; ls /host; "
                      "touch /host/x 2>/dev/null || echo read-only"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  // uid 1000 from the image's /etc/passwd, group staff (50) from its /etc/group.
  EXPECT_EQ(run.out, "hi there\n/tmp\n1000\n1000 50\nboxy\nfrom-host\nread-only\n");
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, MissingCommandReportsTheRuntimeAndLeavesNothing) {
  Output run = Berth({"run", "--rm", image_, "/no/such/program"});
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_TRUE(absl::StrContains(run.err, "/no/such/program")) << run.err;
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, WithoutRmTheContainerStaysWithItsExitCode) {
  Output run = Berth({"run", "--name", "kept", image_, "sh", "-c", "exit 3"});
  EXPECT_EQ(run.exit_code, 3) << run.err;
  EXPECT_TRUE(Tasks().empty());
  Output ps = Berth({"ps", "-a"});
  EXPECT_TRUE(absl::StrContains(ps.out, "kept")) << ps.out;
  EXPECT_TRUE(absl::StrContains(ps.out, "exited (3)")) << ps.out;
  EXPECT_EQ(Berth({"rm", "kept"}).exit_code, 0);
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, TerminalThroughAPty) {
  // berth runs on the slave side of a pty of 100x30; the container's process gets a terminal
  // of its own with that size (ResizePty), and what it prints comes back through ours.
  std::vector<std::string> argv = {
      testing::BinaryPath("tools/berth/berth"), "--contentd-address", contentd_.address(),
      "--snapshotd-address", snapshotd_.address(), "--imaged-address", imaged_address_,
      "--execd-address", execd_address_, "run", "--rm", "-t", image_, "sh", "-c",
      "tty; stty size; test -t 0 && echo stdin-is-a-tty"};
  CommandResult run = RunInTerminal(argv, 100, 30);
  const std::string& output = run.output;
  EXPECT_EQ(run.exit_code, 0) << output;
  EXPECT_TRUE(absl::StrContains(output, "/dev/pts/")) << output;
  EXPECT_TRUE(absl::StrContains(output, "30 100")) << output;
  EXPECT_TRUE(absl::StrContains(output, "stdin-is-a-tty")) << output;
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, DetachedLogsExecStopAndRm) {
  Output run = Berth({"run", "-d", "--name", "bg", image_, "sh", "-c",
                      "trap '' TERM; echo started; echo to-stderr >&2; "
                      "while true; do sleep 1; done"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "bg\n");
  // The shim writes the log; wait until the first lines are in.
  std::string logs = LogsOnceContaining("bg", "to-stderr");
  ASSERT_TRUE(absl::StrContains(logs, "to-stderr")) << logs;
  EXPECT_TRUE(absl::StrContains(logs, "started\n")) << logs;
  Output ps = Berth({"ps"});
  EXPECT_TRUE(absl::StrContains(ps.out, "bg") && absl::StrContains(ps.out, "running")) << ps.out;

  Output exec = Berth({"exec", "bg", "sh", "-c", "echo inside; cat /proc/1/cmdline | head -c 2; exit 5"});
  EXPECT_EQ(exec.exit_code, 5) << exec.err;
  EXPECT_TRUE(absl::StartsWith(exec.out, "inside\nsh")) << exec.out;

  // pause freezes the container (its task says so), unpause thaws it; top lists its processes.
  EXPECT_EQ(Berth({"pause", "bg"}).exit_code, 0);
  EXPECT_TRUE(absl::StrContains(Berth({"ps"}).out, "paused"));
  EXPECT_EQ(Berth({"unpause", "bg"}).exit_code, 0);
  EXPECT_TRUE(absl::StrContains(Berth({"ps"}).out, "running"));
  Output top = Berth({"top", "bg"});
  EXPECT_EQ(top.exit_code, 0) << top.err;
  EXPECT_TRUE(absl::StrContains(top.out, "sh -c trap")) << top.out;

  // rm without -f refuses a running container and changes nothing.
  Output rm = Berth({"rm", "bg"});
  EXPECT_EQ(rm.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(rm.err, "running")) << rm.err;
  EXPECT_EQ(Tasks(), std::vector<std::string>{"bg"});

  // The process ignores SIGTERM: stop sends SIGKILL after --time.
  Output stop = Berth({"stop", "--time", "1", "bg"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  Output waited = Berth({"wait", "bg"});
  EXPECT_EQ(waited.out, "137\n") << waited.err;
  EXPECT_EQ(Berth({"rm", "bg"}).exit_code, 0);
  ExpectNothingLeft();
}

// `run -it` as a person types it: berth on a pty, what is typed echoed by the container's
// terminal with the output, a resize of our terminal reaching the container's, its exit code.
TEST_F(BerthRunTest, InteractiveTerminalTypedIntoThroughAPtyAndResized) {
  PtyProcess berth(BerthArgv({"run", "--rm", "-it", image_, "sh"}), 80, 24);
  ASSERT_TRUE(berth.started());
  ASSERT_TRUE(berth.ReadUntil("# ")) << berth.output();
  ASSERT_TRUE(berth.Type("echo typed-$((6*7))\n"));
  ASSERT_TRUE(berth.ReadUntil("echo typed-$((6*7))")) << berth.output();
  ASSERT_TRUE(berth.ReadUntil("typed-42")) << berth.output();
  ASSERT_TRUE(berth.Type("stty size\n"));
  ASSERT_TRUE(berth.ReadUntil("24 80")) << berth.output();
  // berth gets SIGWINCH and calls ResizePty.
  ASSERT_TRUE(berth.Resize(120, 40));
  ASSERT_TRUE(testing::WaitFor(
      [&] { return berth.Type("stty size\n") && berth.ReadUntil("40 120", absl::Seconds(1)); },
      absl::Seconds(30)))
      << berth.output();
  ASSERT_TRUE(berth.Type("exit 3\n"));
  int status = berth.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status << berth.output();
  ExpectNothingLeft();
}

TEST_F(BerthRunTest, ExecInteractiveTerminalThroughAPty) {
  Output run = Berth({"run", "-d", "--name", "host", image_, "sh", "-c",
                      "while true; do sleep 1; done"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  PtyProcess exec(BerthArgv({"exec", "-it", "host", "sh"}), 100, 30);
  ASSERT_TRUE(exec.ReadUntil("# ")) << exec.output();
  ASSERT_TRUE(exec.Type("echo in-exec-$((2+3)); stty size; tty\n"));
  ASSERT_TRUE(exec.ReadUntil("in-exec-5")) << exec.output();
  ASSERT_TRUE(exec.ReadUntil("30 100")) << exec.output();
  ASSERT_TRUE(exec.ReadUntil("/dev/pts/")) << exec.output();
  ASSERT_TRUE(exec.Type("exit 6\n"));
  int status = exec.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 6) << status << exec.output();
  EXPECT_EQ(Berth({"rm", "-f", "host"}).exit_code, 0);
  ExpectNothingLeft();
}

// `run -d -i`: detached with stdin kept open (docker's), so a process that reads stdin keeps
// running; its stdin is a FIFO beside its log until someone writes and closes it.
TEST_F(BerthRunTest, DetachedInteractiveKeepsStdinOpen) {
  Output run = Berth({"run", "-d", "-i", "--name", "di", image_, "sh", "-c",
                      "echo started; cat; echo eof"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "di\n");
  std::string logs = LogsOnceContaining("di", "started");
  ASSERT_TRUE(absl::StrContains(logs, "started")) << logs;
  // cat still reads: what is written reaches it, and only closing the FIFO ends its input.
  std::string fifo = run_dir_ + "/logs/default/di.log.stdin";
  int in = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(in, 0) << fifo << ": " << strerror(errno);
  ASSERT_EQ(::write(in, "hello\n", 6), 6);
  logs = LogsOnceContaining("di", "hello");
  ASSERT_TRUE(absl::StrContains(logs, "hello")) << logs;
  EXPECT_FALSE(absl::StrContains(logs, "eof")) << logs;
  ::close(in);
  EXPECT_EQ(Berth({"wait", "di"}).out, "0\n");
  EXPECT_TRUE(absl::StrContains(Berth({"logs", "di"}).out, "hello\neof\n"));
  EXPECT_EQ(Berth({"rm", "di"}).exit_code, 0);
  struct stat st;
  EXPECT_NE(::stat(fifo.c_str(), &st), 0) << fifo << " is left";
  ExpectNothingLeft();
}

}  // namespace
}  // namespace berth::integration
