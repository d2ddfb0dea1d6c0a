#include "services/execd/shim/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace berth::shim {
namespace {

// The value of the last `"msg":"..."` on a line with `"level":"error"` in runc's json log.
std::string LastErrorMessage(const std::string& log) {
  std::string message;
  size_t pos = 0;
  while (pos < log.size()) {
    size_t end = log.find('\n', pos);
    if (end == std::string::npos) {
      end = log.size();
    }
    std::string line = log.substr(pos, end - pos);
    pos = end + 1;
    if (line.find("\"level\":\"error\"") == std::string::npos) {
      continue;
    }
    size_t m = line.find("\"msg\":\"");
    if (m == std::string::npos) {
      continue;
    }
    std::string text;
    for (size_t i = m + 7; i < line.size() && line[i] != '"'; ++i) {
      if (line[i] == '\\' && i + 1 < line.size()) {
        ++i;
        text += line[i] == 'n' ? '\n' : line[i] == 't' ? '\t' : line[i];
      } else {
        text += line[i];
      }
    }
    message = text;
  }
  return message;
}

// Accepts one connection on `listener` and receives the fd it sends (SCM_RIGHTS).
int ReceiveFd(int listener) {
  UniqueFd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) {
    return -1;
  }
  char data[256];
  iovec iov{data, sizeof data};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (::recvmsg(conn.get(), &msg, MSG_CMSG_CLOEXEC) < 0) {
    return -1;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
      return fd;
    }
  }
  return -1;
}

}  // namespace

void Log(const char* fmt, ...) {
  char buf[1024];
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  int n = snprintf(buf, sizeof buf, "%lld.%03ld berth-shim[%d]: ", static_cast<long long>(ts.tv_sec),
                   ts.tv_nsec / 1000000, static_cast<int>(::getpid()));
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof buf) - 2) {
    n = sizeof buf - 2;
  }
  buf[n++] = '\n';
  (void)!::write(2, buf, n);
}

std::string Errno(const std::string& what) { return what + ": " + strerror(errno); }

std::string WriteDurable(const std::string& dir, const std::string& name, const std::string& data,
                         bool sync) {
  std::string tmp = dir + "/." + name + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return Errno("open " + tmp);
  }
  if (::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    return Errno("write " + tmp);
  }
  if (sync && ::fsync(fd.get()) != 0) {
    return Errno("fsync " + tmp);
  }
  fd.Reset();
  std::string path = dir + "/" + name;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Errno("rename " + path);
  }
  if (!sync) {
    return "";
  }
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid() || ::fsync(d.get()) != 0) {
    return Errno("fsync " + dir);
  }
  return "";
}

bool ReadWhole(const std::string& path, std::string* out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return false;
  }
  out->clear();
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) {
    out->append(buf, n);
  }
  return n == 0;
}

long long NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

unsigned ExitStatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return WEXITSTATUS(wait_status);
  }
  if (WIFSIGNALED(wait_status)) {
    return 128 + WTERMSIG(wait_status);
  }
  return 255;
}

std::string RunRuntime(const Runtime& runtime, const std::vector<std::string>& args,
                       const RunOptions& options) {
  std::vector<std::string> argv = {runtime.binary, "--root", runtime.root, "--log", runtime.log,
                                   "--log-format", "json"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) {
    cargv.push_back(a.data());
  }
  cargv.push_back(nullptr);
  ::truncate(runtime.log.c_str(), 0);

  int capture[2] = {-1, -1};
  if (options.output != nullptr && ::pipe2(capture, O_CLOEXEC) != 0) {
    return Errno("pipe");
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    return Errno("fork");
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    int null = ::open("/dev/null", O_RDWR);
    int out = options.output != nullptr ? capture[1] : options.out;
    int fds[3] = {options.in >= 0 ? options.in : null, out >= 0 ? out : null,
                  options.err >= 0 ? options.err : null};
    // Move the three out of the way first, so dup2 never overwrites one still needed.
    int moved[3];
    for (int i = 0; i < 3; ++i) {
      moved[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
    }
    for (int i = 0; i < 3; ++i) {
      ::dup2(moved[i], i);
    }
    ::close_range(3, ~0U, 0);
    ::execvp(cargv[0], cargv.data());
    dprintf(2, "exec %s: %s\n", cargv[0], strerror(errno));
    _exit(127);
  }
  std::string captured;
  if (options.output != nullptr) {
    ::close(capture[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(capture[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) {
        captured.append(buf, n);
      }
    }
    ::close(capture[0]);
  }
  int status = 0;
  if (options.console_listener >= 0) {
    // The runtime connects while it runs; wait for either its connection or its exit.
    while (true) {
      pollfd p{options.console_listener, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        options.console->Reset(ReceiveFd(options.console_listener));
        break;
      }
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        pid = -1;
        break;
      }
    }
  }
  if (pid > 0) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (options.output != nullptr) {
    *options.output = captured;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return "";
  }
  std::string log;
  ReadWhole(runtime.log, &log);
  std::string message = LastErrorMessage(log);
  if (!message.empty()) {
    return message;
  }
  char what[320];
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    snprintf(what, sizeof what, "cannot run the OCI runtime %s: not found or not executable",
             runtime.binary.c_str());
    return what;
  }
  snprintf(what, sizeof what, "%s %s: exit status %u", runtime.binary.c_str(),
           args.empty() ? "" : args[0].c_str(), ExitStatusOf(status));
  return what;
}

int ListenUnix(const std::string& path, mode_t mode, std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    *error = "socket path too long: " + path;
    return -1;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = Errno("socket");
    return -1;
  }
  mode_t old = ::umask(0777 & ~mode);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::chmod(path.c_str(), mode) != 0 || ::listen(fd, 64) != 0) {
    *error = Errno("listen " + path);
    ::close(fd);
    return -1;
  }
  return fd;
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace berth::shim
