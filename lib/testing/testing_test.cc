#include "lib/testing/testing.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace berth::testing {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST(TempDirTest, CreatesShortDirAndRemovesTree) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    EXPECT_LT(path.size(), 20u);
    ASSERT_TRUE(Exists(path));
    ASSERT_EQ(mkdir(dir.Join("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir.Join("a/ro").c_str(), 0755), 0);
    std::ofstream(dir.Join("a/ro/file")) << "x";
    ASSERT_EQ(chmod(dir.Join("a/ro").c_str(), 0500), 0);
    ASSERT_EQ(symlink("/etc", dir.Join("a/link").c_str()), 0);
  }
  EXPECT_FALSE(Exists(path));
  EXPECT_TRUE(Exists("/etc/hostname") || Exists("/etc/passwd"));  // symlink not followed
}

TEST(ProcessTest, ExitStatusEnvAndLog) {
  TempDir dir;
  Process::Options opts;
  opts.argv = {"/bin/sh", "-c", "echo out $BERTH_X; echo err >&2; exit 3"};
  opts.env = {{"BERTH_X", "hello"}};
  opts.log_dir = dir.path();
  Process p(opts);
  EXPECT_GT(p.pid(), 0);
  int status = p.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_FALSE(p.running());
  EXPECT_EQ(p.ReadLog(), "out hello\nerr\n");
  EXPECT_EQ(p.Wait(), status);  // idempotent
}

TEST(ProcessTest, TerminateAndKill) {
  TempDir dir;
  Process sleeper({"sleep", "1000"}, dir.path());
  int status = sleeper.Terminate(absl::Seconds(5));
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);

  // Ignores SIGTERM: Terminate falls back to SIGKILL after the timeout.
  Process stubborn({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"},
                   dir.path());
  ASSERT_TRUE(WaitFor([&] { return stubborn.ReadLog() == "ready\n"; }, absl::Seconds(10)));
  status = stubborn.Terminate(absl::Milliseconds(200));
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  Process killed({"sleep", "1000"}, dir.path());
  EXPECT_FALSE(killed.WaitFor(absl::Milliseconds(20)));
  killed.Signal(SIGUSR1);
  status = killed.Wait();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGUSR1);
}

TEST(ProcessTest, DestructorReaps) {
  TempDir dir;
  pid_t pid;
  {
    Process p({"sleep", "1000"}, dir.path());
    pid = p.pid();
  }
  // Reaped by the destructor: the pid is no longer our child.
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(ProcessTest, MissingBinaryExits127) {
  TempDir dir;
  Process p({"/nonexistent/binary"}, dir.path());
  int status = p.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 127);
  EXPECT_NE(p.ReadLog().find("exec /nonexistent/binary failed"), std::string::npos);
}

TEST(RunCommandTest, CapturesOutputAndCode) {
  int code = -1;
  EXPECT_EQ(RunCommand(std::vector<std::string>{"echo", "a", "b"}, &code), "a b\n");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(RunCommand("echo x; echo y >&2; exit 5", &code), "x\ny\n");
  EXPECT_EQ(code, 5);
  RunCommand("kill -9 $$", &code);
  EXPECT_EQ(code, 128 + 9);
}

TEST(WaitForTest, PollsUntilTrueOrDeadline) {
  int n = 0;
  EXPECT_TRUE(WaitFor([&] { return ++n >= 3; }, absl::Seconds(5)));
  EXPECT_EQ(n, 3);
  absl::Time start = absl::Now();
  EXPECT_FALSE(WaitFor([] { return false; }, absl::Milliseconds(50)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
}

TEST(PortsTest, FreeTcpPortAndUnixSocket) {
  int port = FreeTcpPort();
  EXPECT_GT(port, 0);
  EXPECT_FALSE(WaitForTcpPort(port, absl::Milliseconds(30)));
  TempDir dir;
  EXPECT_FALSE(WaitForUnixSocket(dir.Join("none.sock"), absl::Milliseconds(30)));
  Process listener({"python3", "-c",
                    "import socket,sys,time\n"
                    "s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)\n"
                    "time.sleep(1000)\n",
                    dir.Join("s.sock")},
                   dir.path());
  EXPECT_TRUE(WaitForUnixSocket(dir.Join("s.sock"), absl::Seconds(20))) << listener.ReadLog();
}

TEST(BinaryPathTest, UsesEnvironment) {
  const char* old = getenv("BERTH_BINARY_DIR");
  std::string saved = old != nullptr ? old : "";
  setenv("BERTH_BINARY_DIR", "/some/build", 1);
  EXPECT_EQ(BinaryPath("services/contentd/contentd"), "/some/build/services/contentd/contentd");
  if (old != nullptr) {
    setenv("BERTH_BINARY_DIR", saved.c_str(), 1);
  } else {
    unsetenv("BERTH_BINARY_DIR");
  }
}

TEST(BinaryPathTest, WithoutEnvironmentIsThisBuild) {
  const char* old = getenv("BERTH_BINARY_DIR");
  std::string saved = old != nullptr ? old : "";
  unsetenv("BERTH_BINARY_DIR");
  std::string self = BinaryPath("lib/testing/testing_test");
  if (old != nullptr) {
    setenv("BERTH_BINARY_DIR", saved.c_str(), 1);
  }
  EXPECT_EQ(access(self.c_str(), X_OK), 0) << self;
  EXPECT_EQ(access(SourcePath("lib/testing/testing_test.cc").c_str(), R_OK), 0);
}

TEST(NatsServerTest, StartsStopsAndRestartsOnSamePort) {
  NatsServer nats;
  ASSERT_TRUE(nats.running());
  int port = nats.port();
  EXPECT_EQ(nats.url(), "nats://127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(WaitForTcpPort(port, absl::Seconds(1)));
  EXPECT_NE(nats.ReadLog().find("JetStream"), std::string::npos);
  nats.Stop();
  EXPECT_FALSE(nats.running());
  EXPECT_FALSE(WaitForTcpPort(port, absl::Milliseconds(30)));
  nats.Start();
  EXPECT_EQ(nats.port(), port);
  EXPECT_TRUE(WaitForTcpPort(port, absl::Seconds(1)));
}

// The port stays ours while the server is down: the kernel never hands it out by itself (it
// lies below the ephemeral range), and no other NatsServer takes it (the lock file).
TEST(NatsServerTest, PortIsKeptWhileStopped) {
  int first_ephemeral = 0;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> first_ephemeral;
  ASSERT_GT(first_ephemeral, 0);
  NatsServer nats;
  EXPECT_LT(nats.port(), first_ephemeral);
  nats.Stop();
  NatsServer::Options later;
  later.start = false;
  std::vector<std::unique_ptr<NatsServer>> others;
  for (int i = 0; i < 20; ++i) {
    others.push_back(std::make_unique<NatsServer>(later));
    EXPECT_NE(others.back()->port(), nats.port());
  }
  nats.Start();
  EXPECT_TRUE(nats.running());
}

TEST(NatsServerTest, KillIsSigkill) {
  NatsServer nats;
  int port = nats.port();
  nats.Kill();
  EXPECT_FALSE(nats.running());
  EXPECT_FALSE(WaitForTcpPort(port, absl::Milliseconds(30)));
  EXPECT_EQ(nats.ReadLog().find("Server Exiting"), std::string::npos) << nats.ReadLog();
  nats.Start();
  EXPECT_TRUE(WaitForTcpPort(port, absl::Seconds(1)));
}

TEST(NatsServerTest, WithCredentials) {
  NatsServer::Options opts;
  opts.user = "u";
  opts.password = "p";
  NatsServer nats(opts);
  EXPECT_EQ(nats.credentials(), "u:p");
  EXPECT_TRUE(WaitForTcpPort(nats.port(), absl::Seconds(1)));
}

}  // namespace
}  // namespace berth::testing
