#pragma once

// A process's stdio as berth-shim keeps it. containerd's clients pass FIFO paths: the shim
// copies between the FIFOs and pipes (or the pty master) the container holds, so a reader
// leaving never hurts the container (a FIFO whose reader left is drained into nothing; one not
// opened by a reader yet is opened read-write, as containerd's fifo package does). A regular
// file, a `file:///path` URI (containerd's log URI) or a device is handed to the runtime as is.

#include <sys/epoll.h>

#include <memory>
#include <string>

#include "lib/base/unique_fd.h"

namespace berth::shim {

// Copies src to dst while both are open, through epoll. Backpressure: while dst is full the
// shim stops reading src (the writer blocks, as with any pipe); dst gone (EPIPE): the rest is
// read and dropped.
class Pump {
 public:
  // Takes both fds (made non-blocking). `close_dst_at_eof`: close dst when src ends (stdin).
  Pump(int epoll, int src, int dst, bool close_dst_at_eof);
  ~Pump();
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;

  // An epoll event for `fd`; false when the event is not this pump's.
  bool Handle(int fd, uint32_t events);
  // Reads everything src holds now (a process has exited: its last output is in the pipe).
  void Drain();
  // Stops reading src and closes dst once what is pending is written.
  void CloseInput();
  bool done() const { return !src_.valid() && !dst_.valid(); }
  int src() const { return src_.get(); }
  int dst() const { return dst_.get(); }

 private:
  void OnReadable();
  void Flush();
  void Watch();
  void FinishSource();

  int epoll_;
  UniqueFd src_;
  UniqueFd dst_;
  bool close_dst_at_eof_;
  bool discard_ = false;
  bool src_watched_ = false;
  bool dst_watched_ = false;
  std::string pending_;
};

// One process's stdio: the fds the runtime gets, and the pumps that feed them.
struct Stdio {
  UniqueFd in, out, err;  // for the runtime (-1: /dev/null); closed once the runtime has run
  std::unique_ptr<Pump> stdin_pump, stdout_pump, stderr_pump;
  UniqueFd console;  // the pty master (terminal processes)
  bool terminal = false;
  std::string stdout_path;  // kept until the console arrives (terminal)
  std::string stdin_path;

  // Opens the paths (empty: /dev/null). For a terminal only stdin and stdout are used, once
  // the console arrives (AttachConsole). Returns "" or the error.
  std::string Open(int epoll, const std::string& stdin_path, const std::string& stdout_path,
                   const std::string& stderr_path, bool terminal);
  // Terminal: starts copying between the FIFOs and the pty master `console`.
  std::string AttachConsole(int epoll, UniqueFd console);
  // The runtime has its copies: the shim's ends of the container's pipes are no longer needed.
  void CloseRuntimeEnds();
  // An epoll event; false when not this process's.
  bool Handle(int fd, uint32_t events);
  void Drain();
  void CloseStdin();
};

}  // namespace berth::shim
