#include "lib/base/program.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/base/unique_fd.h"

extern char** environ;

namespace berth {

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
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  write_end.Reset();
  input.Reset();
  if (rc != 0) {
    return ErrnoStatus(rc, absl::StrCat("run ", argv[0]));
  }
  absl::StatusOr<std::string> output = ReadAll(read_end.get(), argv[0], 1 << 20);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (wait_status != nullptr) {
    *wait_status = status;
  }
  return output;
}

}  // namespace berth
