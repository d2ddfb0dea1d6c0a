#include "lib/base/program.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth {
namespace {

class ProgramTest : public ::testing::Test {
 protected:
  // A shell that records its PID and its child's, prints "started", then waits on a child
  // `sleep` that never ends on its own: a hung credential helper.
  std::vector<std::string> Hanging() const {
    return {"/bin/sh", "-c",
            absl::StrCat("echo $$ > ", dir_, "/pid; sleep 600 & echo $! > ", dir_,
                         "/child; echo started; wait")};
  }

  pid_t PidFrom(const std::string& name) const {
    absl::StatusOr<std::string> text = ReadFile(dir_ + "/" + name);
    int pid = 0;
    if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid)) {
      return 0;
    }
    return pid;
  }

  void ExpectKilled() const {
    pid_t shell = PidFrom("pid");
    pid_t child = PidFrom("child");
    ASSERT_GT(shell, 0);
    ASSERT_GT(child, 0);
    // The shell was our child and is reaped: gone at once.
    EXPECT_NE(::kill(shell, 0), 0) << "the program still exists";
    EXPECT_TRUE(testing::WaitUntilNotRunning(child, absl::Seconds(10)))
        << "what the program started still runs";
  }

  testing::TempDir temp_;
  const std::string dir_ = temp_.path();
};

TEST_F(ProgramTest, OutputAndWaitStatus) {
  int status = -1;
  ProgramOptions options;
  options.input = "in\n";
  options.timeout = absl::Seconds(30);
  absl::StatusOr<std::string> out =
      RunProgram({"/bin/sh", "-c", "read x; echo got $x; exit 3"}, &status, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "got in\n");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  // Unbounded, the same.
  out = RunProgram({"/bin/sh", "-c", "echo plain; exit 4"}, &status);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "plain\n");
  EXPECT_EQ(WEXITSTATUS(status), 4);
  EXPECT_TRUE(absl::IsNotFound(RunProgram({"berth-no-such-program"}, nullptr).status()));
}

TEST_F(ProgramTest, TimeoutKillsTheProgramAndWhatItStarted) {
  ProgramOptions options;
  options.timeout = absl::Milliseconds(300);
  absl::StatusOr<std::string> out = RunProgram(Hanging(), nullptr, options);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded) << out.status();
  EXPECT_TRUE(absl::StrContains(out.status().message(), "/bin/sh")) << out.status();
  ExpectKilled();
}

TEST_F(ProgramTest, TheContextsDeadlineBoundsItToo) {
  Context ctx = Context().WithTimeout(absl::Milliseconds(300));
  ProgramOptions options;
  options.timeout = absl::Seconds(600);
  options.ctx = &ctx;
  absl::StatusOr<std::string> out = RunProgram(Hanging(), nullptr, options);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded) << out.status();
  ExpectKilled();
}

TEST_F(ProgramTest, ACancelledRequestKillsIt) {
  auto cancellation = std::make_shared<Cancellation>();
  Context ctx;
  ctx.cancellation = cancellation;
  ProgramOptions options;
  options.ctx = &ctx;
  // Cancelled once the program has started (it wrote its PIDs).
  std::thread canceller([&] {
    testing::WaitFor([&] { return PidFrom("child") != 0; }, absl::Seconds(30));
    cancellation->Cancel();
  });
  absl::StatusOr<std::string> out = RunProgram(Hanging(), nullptr, options);
  canceller.join();
  ASSERT_EQ(out.status().code(), absl::StatusCode::kCancelled) << out.status();
  ExpectKilled();
}

}  // namespace
}  // namespace berth
