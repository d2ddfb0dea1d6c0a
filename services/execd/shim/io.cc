#include "services/execd/shim/io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "services/execd/shim/sys.h"

namespace berth::shim {
namespace {

constexpr size_t kChunk = 16384;

void EpollSet(int epoll, int fd, uint32_t events, bool* watched) {
  if (fd < 0) {
    return;
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (events == 0) {
    if (*watched) {
      ::epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nullptr);
      *watched = false;
    }
    return;
  }
  ::epoll_ctl(epoll, *watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  *watched = true;
}

bool IsFifo(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

// A FIFO for the shim to write into: write-only when a reader is there, else read-write so the
// open does not block and a reader may come later.
int OpenFifoForWriting(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENXIO) {
    fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  }
  return fd;
}

// An output path: "" (nothing), a FIFO (pumped from a pipe), or a file the runtime gets as is.
std::string OpenOutput(int epoll, const std::string& path, UniqueFd* runtime_end,
                       std::unique_ptr<Pump>* pump) {
  if (path.empty()) {
    return "";
  }
  std::string file = path;
  if (file.rfind("file://", 0) == 0) {
    file = file.substr(7);
  } else if (IsFifo(file)) {
    int fifo = OpenFifoForWriting(file);
    if (fifo < 0) {
      return Errno("open " + file);
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      ::close(fifo);
      return Errno("pipe");
    }
    runtime_end->Reset(p[1]);
    pump->reset(new Pump(epoll, p[0], fifo, true));
    return "";
  }
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    return Errno("open " + file);
  }
  runtime_end->Reset(fd);
  return "";
}

}  // namespace

Pump::Pump(int epoll, int src, int dst, bool close_dst_at_eof)
    : epoll_(epoll), src_(src), dst_(dst), close_dst_at_eof_(close_dst_at_eof) {
  SetNonBlocking(src);
  SetNonBlocking(dst);
  Watch();
}

Pump::~Pump() {
  EpollSet(epoll_, src_.get(), 0, &src_watched_);
  EpollSet(epoll_, dst_.get(), 0, &dst_watched_);
}

void Pump::Watch() {
  // Read while nothing waits to be written; otherwise wait for dst to take it.
  bool want_src = src_.valid() && pending_.empty();
  bool want_dst = dst_.valid() && !pending_.empty();
  EpollSet(epoll_, src_.get(), want_src ? uint32_t{EPOLLIN} : 0u, &src_watched_);
  EpollSet(epoll_, dst_.get(), want_dst ? uint32_t{EPOLLOUT} : 0u, &dst_watched_);
}

bool Pump::Handle(int fd, uint32_t events) {
  if (fd >= 0 && fd == src_.get()) {
    OnReadable();
    return true;
  }
  if (fd >= 0 && fd == dst_.get()) {
    if (events & (EPOLLERR | EPOLLHUP)) {
      discard_ = true;
      pending_.clear();
    }
    Flush();
    return true;
  }
  return false;
}

void Pump::OnReadable() {
  char buf[kChunk];
  while (src_.valid() && pending_.empty()) {
    ssize_t n = ::read(src_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      break;
    }
    if (n <= 0) {  // EOF, or EIO from a pty master whose slave side closed
      FinishSource();
      return;
    }
    if (!discard_ && dst_.valid()) {
      pending_.assign(buf, n);
      Flush();
    }
  }
  Watch();
}

void Pump::Flush() {
  while (!pending_.empty() && dst_.valid()) {
    ssize_t n = ::write(dst_.get(), pending_.data(), pending_.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      break;
    }
    if (n < 0) {  // EPIPE: the reader left; keep the container's side drained
      discard_ = true;
      pending_.clear();
      break;
    }
    pending_.erase(0, n);
  }
  if (!src_.valid() && pending_.empty() && close_dst_at_eof_) {
    EpollSet(epoll_, dst_.get(), 0, &dst_watched_);
    dst_.Reset();
  }
  Watch();
}

void Pump::FinishSource() {
  EpollSet(epoll_, src_.get(), 0, &src_watched_);
  src_.Reset();
  if (!close_dst_at_eof_) {
    EpollSet(epoll_, dst_.get(), 0, &dst_watched_);
    dst_.Release();  // not ours to close (a pty master shared with the output side)
  }
  Flush();
}

void Pump::Drain() {
  // Blocking on a full dst here would stall the shim: write what fits, keep the rest pending.
  if (src_.valid() && pending_.empty()) {
    OnReadable();
  }
}

void Pump::CloseInput() {
  if (src_.valid()) {
    FinishSource();
  }
}

std::string Stdio::Open(int epoll, const std::string& in_path, const std::string& out_path,
                        const std::string& err_path, bool tty) {
  terminal = tty;
  stdin_path = in_path;
  stdout_path = out_path;
  if (terminal) {
    return "";  // the pumps start when the runtime hands over the console
  }
  if (!in_path.empty()) {
    if (IsFifo(in_path)) {
      int fifo = ::open(in_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      if (fifo < 0) {
        return Errno("open " + in_path);
      }
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) {
        ::close(fifo);
        return Errno("pipe");
      }
      in.Reset(p[0]);
      stdin_pump.reset(new Pump(epoll, fifo, p[1], true));
    } else {
      in.Reset(::open(in_path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in.valid()) {
        return Errno("open " + in_path);
      }
    }
  }
  std::string error = OpenOutput(epoll, out_path, &out, &stdout_pump);
  if (error.empty() && !err_path.empty() && err_path == out_path && !stdout_pump) {
    err.Reset(::dup(out.get()));  // one log file for both
    return "";
  }
  return error.empty() ? OpenOutput(epoll, err_path, &err, &stderr_pump) : error;
}

std::string Stdio::AttachConsole(int epoll, UniqueFd master) {
  console = std::move(master);
  if (!stdout_path.empty()) {
    std::string file = stdout_path;
    if (file.rfind("file://", 0) == 0) {
      file = file.substr(7);
    }
    int dst = IsFifo(file) ? OpenFifoForWriting(file)
                           : ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (dst < 0) {
      return Errno("open " + file);
    }
    stdout_pump.reset(new Pump(epoll, ::fcntl(console.get(), F_DUPFD_CLOEXEC, 3), dst, true));
  }
  if (!stdin_path.empty()) {
    int src = ::open(stdin_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (src < 0) {
      return Errno("open " + stdin_path);
    }
    stdin_pump.reset(new Pump(epoll, src, ::fcntl(console.get(), F_DUPFD_CLOEXEC, 3), true));
  }
  return "";
}

void Stdio::CloseRuntimeEnds() {
  in.Reset();
  out.Reset();
  err.Reset();
}

bool Stdio::Handle(int fd, uint32_t events) {
  for (auto* pump : {&stdin_pump, &stdout_pump, &stderr_pump}) {
    if (*pump && (*pump)->Handle(fd, events)) {
      if ((*pump)->done()) {
        pump->reset();
      }
      return true;
    }
  }
  return false;
}

void Stdio::Drain() {
  for (auto* pump : {&stdout_pump, &stderr_pump}) {
    if (*pump) {
      (*pump)->Drain();
    }
  }
}

void Stdio::CloseStdin() {
  if (stdin_pump) {
    stdin_pump->CloseInput();
    if (stdin_pump->done()) {
      stdin_pump.reset();
    }
  }
}

}  // namespace berth::shim
