#include "lib/testing/testing.h"


#include <arpa/inet.h>
#include <fcntl.h>
#include <fts.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/testing/internal.h"

extern char** environ;

namespace berth::testing {

namespace internal {

[[noreturn]] void Die(absl::string_view message) {
  std::fprintf(stderr, "berth::testing: %.*s\n", static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
  std::abort();
}

}  // namespace internal

namespace {

using internal::Die;

std::string ErrnoText(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

// argv/envp as the NULL-terminated arrays execve wants, built before fork so the child only
// makes async-signal-safe calls.
struct ExecArgs {
  std::vector<std::string> storage_argv;
  std::vector<std::string> storage_env;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

ExecArgs BuildExecArgs(const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& env) {
  ExecArgs out;
  out.storage_argv = argv;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view entry(*e);
    size_t eq = entry.find('=');
    std::string name(entry.substr(0, eq));
    if (env.count(name) == 0) {
      out.storage_env.emplace_back(entry);
    }
  }
  for (const auto& [name, value] : env) {
    out.storage_env.push_back(absl::StrCat(name, "=", value));
  }
  for (std::string& s : out.storage_argv) {
    out.argv.push_back(s.data());
  }
  out.argv.push_back(nullptr);
  for (std::string& s : out.storage_env) {
    out.envp.push_back(s.data());
  }
  out.envp.push_back(nullptr);
  return out;
}

// write() all of `s`; async-signal-safe.
void WriteAll(int fd, const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) {
      return;
    }
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// Runs in the forked child: only async-signal-safe calls. Never returns.
[[noreturn]] void ExecChild(const ExecArgs& args, int out_fd, const char* cwd,
                            bool kill_with_parent, pid_t parent) {
  if (kill_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(127);
    }
  }
  // Own process group: a Ctrl-C aimed at the test does not hit its daemons twice, and the
  // children keep default signal handling whatever the test process blocked or ignored.
  setpgid(0, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, nullptr);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, 0);
  }
  dup2(out_fd, 1);
  dup2(out_fd, 2);
  close_range(3, ~0U, 0);
  if (cwd != nullptr && chdir(cwd) != 0) {
    WriteAll(2, "berth::testing: chdir failed\n");
    _exit(127);
  }
  execvpe(args.argv[0], args.argv.data(), args.envp.data());
  WriteAll(2, "berth::testing: exec ");
  WriteAll(2, args.argv[0]);
  int err = errno;
  char digits[16];
  int i = static_cast<int>(sizeof(digits)) - 1;
  digits[i] = '\0';
  do {
    digits[--i] = static_cast<char>('0' + err % 10);
    err /= 10;
  } while (err > 0 && i > 0);
  WriteAll(2, " failed: errno ");
  WriteAll(2, digits + i);
  WriteAll(2, "\n");
  _exit(127);
}

std::string Basename(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

std::atomic<int> log_counter{0};

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return -1;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TempDir

TempDir::TempDir() {
  char templ[] = "/tmp/b-XXXXXX";
  if (mkdtemp(templ) == nullptr) {
    Die(ErrnoText("mkdtemp /tmp/b-XXXXXX"));
  }
  path_ = templ;
}

TempDir::~TempDir() { RemoveTree(path_); }

std::string TempDir::Join(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

bool RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT;
  }
  std::string copy = path;
  char* paths[] = {copy.data(), nullptr};
  // FTS_PHYSICAL: never follow symlinks. FTS_XDEV: do not descend into other file systems (a
  // mount left behind by a failed test stays; we never unmount).
  FTS* fts = fts_open(paths, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, nullptr);
  if (fts == nullptr) {
    return false;
  }
  bool ok = true;
  while (FTSENT* e = fts_read(fts)) {
    switch (e->fts_info) {
      case FTS_D:
        if (e->fts_statp->st_dev != st.st_dev) {
          break;  // a mount point: not ours to touch
        }
        // Make sure we can list and delete inside (tests create read-only dirs).
        chmod(e->fts_accpath, (e->fts_statp->st_mode & 07777) | S_IRWXU);
        break;
      case FTS_DP:
        if (e->fts_statp->st_dev != st.st_dev) {
          ok = false;  // a mount point: leave it
          break;
        }
        if (rmdir(e->fts_accpath) != 0) {
          ok = false;
        }
        break;
      case FTS_DNR:
      case FTS_ERR:
      case FTS_NS:
        ok = false;
        break;
      default:
        if (unlink(e->fts_accpath) != 0 && errno != ENOENT) {
          ok = false;
        }
        break;
    }
  }
  fts_close(fts);
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Process

Process::Process(Options options) { Spawn(std::move(options)); }

Process::Process(std::vector<std::string> argv, const std::string& log_dir) {
  Options options;
  options.argv = std::move(argv);
  options.log_dir = log_dir;
  Spawn(std::move(options));
}

void Process::Spawn(Options options) {
  if (options.argv.empty()) {
    Die("Process: empty argv");
  }
  log_path_ = absl::StrCat(options.log_dir, "/", Basename(options.argv[0]), "-",
                           log_counter.fetch_add(1), ".log");
  int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    Die(ErrnoText(absl::StrCat("open ", log_path_)));
  }
  ExecArgs args = BuildExecArgs(options.argv, options.env);
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    Die(ErrnoText("fork"));
  }
  if (pid == 0) {
    ExecChild(args, fd, cwd, options.kill_with_parent, parent);
  }
  close(fd);
  pid_ = pid;
}

Process::~Process() {
  if (!reaped_) {
    Kill();
  }
}

void Process::Signal(int sig) {
  if (!reaped_) {
    kill(pid_, sig);
  }
}

int Process::Kill() {
  Signal(SIGKILL);
  return Wait();
}

int Process::Terminate(absl::Duration timeout) {
  if (reaped_) {
    return status_;
  }
  Signal(SIGTERM);
  int status = 0;
  if (WaitFor(timeout, &status)) {
    return status;
  }
  return Kill();
}

int Process::Wait() {
  while (!reaped_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, 0);
    if (r == pid_) {
      reaped_ = true;
      status_ = status;
    } else if (r < 0 && errno != EINTR) {
      Die(ErrnoText(absl::StrCat("waitpid ", pid_)));
    }
  }
  return status_;
}

bool Process::TryReap() {
  if (reaped_) {
    return true;
  }
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = status;
    return true;
  }
  if (r < 0 && errno != EINTR) {
    Die(ErrnoText(absl::StrCat("waitpid ", pid_)));
  }
  return false;
}

bool Process::WaitFor(absl::Duration timeout, int* status) {
  absl::Time deadline = absl::Now() + timeout;
  while (!TryReap()) {
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (status != nullptr) {
    *status = status_;
  }
  return true;
}

std::string Process::ReadLog() const { return ReadFileOrEmpty(log_path_); }

// ---------------------------------------------------------------------------------------------
// Paths, ports, polling

namespace {

// $name when set and not empty, else the directory this build was configured with.
std::string DirFromEnv(const char* name, const char* built_in) {
  const char* dir = std::getenv(name);
  return (dir == nullptr || *dir == '\0') ? std::string(built_in) : std::string(dir);
}

}  // namespace

std::string BinaryPath(absl::string_view relative) {
  return absl::StrCat(DirFromEnv("BERTH_BINARY_DIR", BERTH_BUILD_BINARY_DIR), "/", relative);
}

std::string SourcePath(absl::string_view relative) {
  return absl::StrCat(DirFromEnv("BERTH_SOURCE_DIR", BERTH_BUILD_SOURCE_DIR), "/", relative);
}

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Die(ErrnoText("socket"));
  }
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die(ErrnoText("bind 127.0.0.1:0"));
  }
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die(ErrnoText("getsockname"));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool WaitUntilNotRunning(int pid, absl::Duration timeout) {
  return WaitFor(
      [pid] {
        std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
        std::string line;
        if (!std::getline(stat, line)) {
          return true;
        }
        size_t paren = line.rfind(')');
        return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
      },
      timeout);
}

bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (cond()) {
      return true;
    }
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

namespace {

bool CanConnectUnix(const std::string& path) {
  sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    Die(absl::StrCat("unix socket path too long (", path.size(), " bytes): ", path));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

bool WaitForUnixSocket(const std::string& path, absl::Duration timeout) {
  return WaitFor([&] { return CanConnectUnix(path); }, timeout);
}

bool WaitForTcpPort(int port, absl::Duration timeout) {
  return WaitFor([&] { return internal::CanConnectTcp(port); }, timeout);
}

namespace internal {

bool CanConnectTcp(int port) {
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------
// RunCommand

std::string RunCommand(const std::vector<std::string>& argv, int* exit_code) {
  if (argv.empty()) {
    Die("RunCommand: empty argv");
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    Die(ErrnoText("pipe2"));
  }
  ExecArgs args = BuildExecArgs(argv, {});
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    Die(ErrnoText("fork"));
  }
  if (pid == 0) {
    close(fds[0]);
    ExecChild(args, fds[1], nullptr, /*kill_with_parent=*/true, parent);
  }
  close(fds[1]);
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      Die(ErrnoText("waitpid"));
    }
  }
  if (exit_code != nullptr) {
    *exit_code = ExitCodeOf(status);
  }
  return out;
}

std::string RunCommand(const std::string& shell_command, int* exit_code) {
  return RunCommand(std::vector<std::string>{"/bin/sh", "-c", shell_command}, exit_code);
}

}  // namespace berth::testing
