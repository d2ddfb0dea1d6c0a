#include "lib/base/program.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/base/posix.h"
#include "lib/base/unique_fd.h"

extern char** environ;

namespace berth {
namespace {

constexpr size_t kMaxOutput = 1 << 20;

// Reads the program's output until EOF and reaps it. When `deadline` passes or the context
// is cancelled first, or the output grows too large, it kills the program's process group,
// reaps it and says why.
absl::StatusOr<std::string> ReadBounded(int fd, pid_t pid, const std::string& program,
                                        absl::Time deadline, const ProgramOptions& options,
                                        int* status) {
  const absl::Duration limit = std::max(absl::ZeroDuration(), deadline - absl::Now());
  std::string data;
  char buf[16384];
  bool eof = false;
  absl::Status stop;
  while (stop.ok()) {
    if (options.ctx != nullptr && options.ctx->cancellation != nullptr &&
        options.ctx->cancellation->IsCancelled()) {
      stop = absl::CancelledError(
          absl::StrCat("run ", program, ": the request was cancelled; killed it"));
      break;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      stop = absl::DeadlineExceededError(
          absl::StrCat("run ", program, ": still running after ",
                       absl::FormatDuration(absl::Trunc(limit, absl::Milliseconds(1))),
                       "; killed it"));
      break;
    }
    // Short slices: a cancelled request is noticed within 50 ms.
    const int slice =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(left), 1, 50));
    if (eof) {
      pid_t done = ::waitpid(pid, status, WNOHANG);
      if (done == pid || (done < 0 && errno != EINTR)) {
        return data;
      }
      absl::SleepFor(absl::Milliseconds(std::min(slice, 10)));
      continue;
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, slice) <= 0) {
      continue;  // nothing yet (or EINTR)
    }
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) {
      eof = true;
    } else if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      if (data.size() > kMaxOutput) {
        stop = absl::InvalidArgumentError(
            absl::StrCat(program, ": larger than ", kMaxOutput, " bytes"));
      }
    } else if (errno != EINTR && errno != EAGAIN) {
      stop = ErrnoStatus(errno, absl::StrCat("read ", program));
    }
  }
  ::kill(-pid, SIGKILL);
  while (::waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
  return stop;
}

}  // namespace

absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& args, int* wait_status,
                                       const ProgramOptions& options) {
  if (args.empty()) {
    return absl::InvalidArgumentError("run: no program");
  }
  if (options.input.size() > (64 << 10)) {
    return absl::InvalidArgumentError(absl::StrCat("run ", args[0], ": input over 64 KiB"));
  }
  std::vector<std::string> argv = args;
  std::vector<char*> cargv;
  for (std::string& a : argv) {
    cargv.push_back(a.data());
  }
  cargv.push_back(nullptr);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return ErrnoStatus(errno, "pipe");
  }
  UniqueFd read_end(out[0]);
  UniqueFd write_end(out[1]);
  UniqueFd input;
  if (!options.input.empty()) {
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
      return ErrnoStatus(errno, "pipe");
    }
    input.Reset(in[0]);
    UniqueFd feed(in[1]);
    // Fits the pipe's buffer (64 KiB): written whole before the program runs.
    if (::write(feed.get(), options.input.data(), options.input.size()) !=
        static_cast<ssize_t>(options.input.size())) {
      return ErrnoStatus(errno, absl::StrCat("run ", argv[0], ": writing its input"));
    }
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (input.valid()) {
    posix_spawn_file_actions_adddup2(&actions, input.get(), 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  if (options.capture_stderr) {
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  // Daemons block their termination signals; the child must not inherit that.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  const bool bounded = options.timeout != absl::InfiniteDuration() || options.ctx != nullptr;
  short flags = POSIX_SPAWN_SETSIGMASK;
  if (bounded) {
    posix_spawnattr_setpgroup(&attr, 0);  // its own group, killed whole at the deadline
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  write_end.Reset();
  input.Reset();
  if (rc != 0) {
    return ErrnoStatus(rc, absl::StrCat("run ", argv[0]));
  }
  int status = 0;
  if (bounded) {
    absl::Time deadline = absl::Now() + options.timeout;
    if (options.ctx != nullptr) {
      deadline = std::min(deadline, options.ctx->deadline);
    }
    absl::StatusOr<std::string> output =
        ReadBounded(read_end.get(), pid, argv[0], deadline, options, &status);
    if (wait_status != nullptr) {
      *wait_status = status;
    }
    return output;
  }
  absl::StatusOr<std::string> output = ReadAll(read_end.get(), argv[0], kMaxOutput);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (wait_status != nullptr) {
    *wait_status = status;
  }
  return output;
}

}  // namespace berth
