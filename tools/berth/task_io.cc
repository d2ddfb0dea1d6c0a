#include "tools/berth/task_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"

namespace berth::cli {
namespace {

// Waits until `fd` is ready for `events` or `stop` is set. False when stopped.
bool WaitReady(int fd, short events, int stop) {
  struct pollfd fds[2] = {{fd, events, 0}, {stop, POLLIN, 0}};
  while (true) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 || (fds[1].revents & POLLIN) != 0) {
      return false;
    }
    return true;
  }
}

// Writes all of buf to `fd`, waiting (and giving up when `stop` is set) when it is full.
bool WriteAll(int fd, const char* buf, size_t size, int stop) {
  while (size > 0) {
    ssize_t n = ::write(fd, buf, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN && WaitReady(fd, POLLOUT, stop)) {
        continue;
      }
      return false;
    }
    buf += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

absl::Status MakeFifo(const std::string& path) {
  if (::mkfifo(path.c_str(), 0600) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkfifo ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TaskIo>> TaskIo::Create(const std::string& run_dir,
                                                       const std::string& id, Options options) {
  std::unique_ptr<TaskIo> io(new TaskIo());
  io->stop_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!io->stop_.valid()) {
    return ErrnoStatus(errno, "eventfd");
  }
  std::string dir = absl::StrCat(run_dir, "/fifo/", RandomHex(8));
  BERTH_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  io->dir_ = dir;
  if (options.stdin) {
    io->stdin_path_ = absl::StrCat(dir, "/", id, "-stdin");
    BERTH_RETURN_IF_ERROR(MakeFifo(io->stdin_path_));
    // Read-write: the open does not wait for the shim, and the FIFO keeps what is written
    // before the shim opens it.
    io->stdin_fd_.Reset(::open(io->stdin_path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!io->stdin_fd_.valid()) {
      return ErrnoStatus(errno, absl::StrCat("open ", io->stdin_path_));
    }
  }
  auto make_output = [&](const std::string& name, std::string* path,
                         UniqueFd* fd) -> absl::Status {
    *path = absl::StrCat(dir, "/", id, "-", name);
    BERTH_RETURN_IF_ERROR(MakeFifo(*path));
    fd->Reset(::open(path->c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd->valid()) {
      return ErrnoStatus(errno, absl::StrCat("open ", *path));
    }
    UniqueFd placeholder(::open(path->c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (!placeholder.valid()) {
      return ErrnoStatus(errno, absl::StrCat("open ", *path, " for writing"));
    }
    io->placeholders_.push_back(std::move(placeholder));
    return absl::OkStatus();
  };
  BERTH_RETURN_IF_ERROR(make_output("stdout", &io->stdout_path_, &io->stdout_fd_));
  if (options.stderr) {
    BERTH_RETURN_IF_ERROR(make_output("stderr", &io->stderr_path_, &io->stderr_fd_));
  }
  return io;
}

TaskIo::~TaskIo() {
  if (stop_.valid()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
  }
  for (std::thread& t : outputs_) {
    t.join();
  }
  if (input_.joinable()) {
    input_.join();
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void TaskIo::StartCopying(std::function<void()> on_stdin_eof) {
  outputs_.emplace_back([this] { CopyOut(stdout_fd_.get(), STDOUT_FILENO); });
  if (stderr_fd_.valid()) {
    outputs_.emplace_back([this] { CopyOut(stderr_fd_.get(), STDERR_FILENO); });
  }
  if (stdin_fd_.valid()) {
    input_ = std::thread([this, cb = std::move(on_stdin_eof)] { CopyIn(cb); });
  }
}

void TaskIo::Started() { placeholders_.clear(); }

void TaskIo::WaitOutput() {
  for (std::thread& t : outputs_) {
    t.join();
  }
  outputs_.clear();
}

void TaskIo::CopyOut(int from, int to) {
  char buf[32 * 1024];
  while (true) {
    ssize_t n = ::read(from, buf, sizeof(buf));
    if (n > 0) {
      if (!WriteAll(to, buf, static_cast<size_t>(n), stop_.get())) {
        return;
      }
      continue;
    }
    if (n == 0) {
      return;  // every writer closed: the process and its shim are done with it
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN || !WaitReady(from, POLLIN, stop_.get())) {
      return;
    }
  }
}

void TaskIo::CopyIn(std::function<void()> on_eof) {
  char buf[32 * 1024];
  while (true) {
    if (!WaitReady(STDIN_FILENO, POLLIN, stop_.get())) {
      return;
    }
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    if (!WriteAll(stdin_fd_.get(), buf, static_cast<size_t>(n), stop_.get())) {
      return;
    }
  }
  stdin_fd_.Reset();
  if (on_eof) {
    on_eof();
  }
}

RawTerminal::RawTerminal() {
  if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) {
    return;
  }
  struct termios raw = saved_;
  ::cfmakeraw(&raw);
  // Output processing stays on, as docker and ctr leave it, so "\n" from the CLI's own
  // messages still returns the carriage.
  raw.c_oflag = saved_.c_oflag;
  active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
}

RawTerminal::~RawTerminal() {
  if (active_) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
}

bool TerminalSize(uint32_t* width, uint32_t* height) {
  struct winsize ws {};
  if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0 && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0) {
    return false;
  }
  *width = ws.ws_col;
  *height = ws.ws_row;
  return true;
}

namespace {
sigset_t RelayedSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) {
    sigaddset(&set, s);
  }
  return set;
}
}  // namespace

void SignalRelay::BlockSignals() {
  sigset_t set = RelayedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

SignalRelay::SignalRelay(std::function<void(int)> on_signal, std::function<void()> on_resize) {
  sigset_t set = RelayedSignals();
  signal_fd_.Reset(::signalfd(-1, &set, SFD_CLOEXEC));
  stop_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!signal_fd_.valid() || !stop_.valid()) {
    return;
  }
  thread_ = std::thread([this, on_signal = std::move(on_signal),
                         on_resize = std::move(on_resize)] {
    while (WaitReady(signal_fd_.get(), POLLIN, stop_.get())) {
      struct signalfd_siginfo info;
      if (::read(signal_fd_.get(), &info, sizeof(info)) != sizeof(info)) {
        continue;
      }
      if (info.ssi_signo == SIGWINCH) {
        on_resize();
      } else {
        on_signal(static_cast<int>(info.ssi_signo));
      }
    }
  });
}

SignalRelay::~SignalRelay() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }
}

}  // namespace berth::cli
