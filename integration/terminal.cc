// RunInTerminal (integration/harness.h): a program run on a pseudo-terminal.

#include <errno.h>
#include <pty.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "integration/harness.h"

namespace berth::integration {

CommandResult RunInTerminal(const std::vector<std::string>& argv, int cols, int rows) {
  struct winsize size {};
  size.ws_col = static_cast<unsigned short>(cols);
  size.ws_row = static_cast<unsigned short>(rows);
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (std::string& a : args) {
    cargs.push_back(a.data());
  }
  cargs.push_back(nullptr);
  CommandResult result;
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, &size);
  if (pid < 0) {
    result.output = absl::StrCat("forkpty: ", strerror(errno));
    return result;
  }
  if (pid == 0) {
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  char buf[4096];
  while (true) {
    ssize_t n = read(master, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;  // EIO once the program exited and the slave side closed
    }
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(master);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

}  // namespace berth::integration
