// berth-shim: one per container (DESIGN.md, Execution; DEVELOPING.md, "the shim"). execd runs
//   berth-shim --id ID --bundle DIR --state DIR --runtime BINARY --runtime-root DIR
//              [--stdin PATH] [--stdout PATH] [--stderr PATH] [--terminal]
// The process execd started forks the shim proper (its own session, a child subreaper, cwd the
// state dir, stdio /dev/null and <state>/shim.log) and exits once the runtime's create has
// answered, printing "ok PID" (the container's init) or "err MESSAGE": execd is not the shim's
// parent, so execd can die and restart without the shim noticing.

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <string>

#include "services/execd/shim/protocol.h"
#include "services/execd/shim/shim.h"

namespace {

int Usage(const char* why) {
  dprintf(2, "berth-shim: %s\nusage: berth-shim --id ID --bundle DIR --state DIR --runtime BIN "
             "--runtime-root DIR [--stdin P] [--stdout P] [--stderr P] [--terminal]\n", why);
  return 2;
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) {
      return;
    }
    off += n;
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::close_range(3, ~0U, 0);  // nothing execd had open is the shim's business
  berth::shim::Config config;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--terminal") {
      config.terminal = true;
      continue;
    }
    if (i + 1 >= argc) {
      return Usage(("missing value for " + flag).c_str());
    }
    std::string value = argv[++i];
    if (flag == "--id") config.id = value;
    else if (flag == "--bundle") config.bundle = value;
    else if (flag == "--state") config.state_dir = value;
    else if (flag == "--runtime") config.runtime.binary = value;
    else if (flag == "--runtime-root") config.runtime.root = value;
    else if (flag == "--stdin") config.stdin_path = value;
    else if (flag == "--stdout") config.stdout_path = value;
    else if (flag == "--stderr") config.stderr_path = value;
    else return Usage(("unknown flag " + flag).c_str());
  }
  if (config.id.empty() || config.bundle.empty() || config.state_dir.empty() ||
      config.runtime.binary.empty() || config.runtime.root.empty()) {
    return Usage("--id, --bundle, --state, --runtime and --runtime-root are required");
  }
  if (::chdir(config.state_dir.c_str()) != 0) {
    WriteAll(1, berth::shim::EncodeLine({"err", "failed", berth::shim::Errno("chdir " + config.state_dir)}));
    return 1;
  }
  config.runtime.log = config.state_dir + "/runtime.log";

  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    return 1;
  }
  pid_t child = ::fork();
  if (child < 0) {
    return 1;
  }
  if (child > 0) {
    // The launcher: relay the shim's answer and leave.
    ::close(ready[1]);
    std::string answer;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(ready[0], buf, sizeof buf)) > 0) {
      answer.append(buf, n);
    }
    if (answer.empty()) {
      answer = berth::shim::EncodeLine({"err", "failed", "the shim died while creating the container"});
    }
    WriteAll(1, answer);
    return answer.rfind("ok", 0) == 0 ? 0 : 1;
  }

  ::close(ready[0]);
  ::setsid();
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int log = ::open("shim.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ::dup2(null, 0);
  ::dup2(null, 1);
  ::dup2(log >= 0 ? log : null, 2);
  ::close(null);
  if (log >= 0) {
    ::close(log);
  }

  // Who the shim is, for tools and tests. No fsync: a shim does not outlive its machine.
  berth::shim::WriteDurable(".", "shim.pid", std::to_string(::getpid()) + "\n", /*sync=*/false);
  berth::shim::Shim shim(config);
  std::string error = shim.Create();
  if (!error.empty()) {
    berth::shim::Log("create %s: %s", config.id.c_str(), error.c_str());
    WriteAll(ready[1], berth::shim::EncodeLine({"err", "failed", error}));
    return 1;
  }
  WriteAll(ready[1], berth::shim::EncodeLine({"ok", std::to_string(shim.init_pid())}));
  ::close(ready[1]);
  shim.Run();
  return 0;
}
