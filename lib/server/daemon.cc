#include "lib/server/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include <grpc/grpc.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <prometheus/exposer.h>
#include <systemd/sd-daemon.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"
#include "lib/server/unix_socket.h"
#include "lib/server/builtin_services.h"
#include "lib/server/metrics_interceptor.h"

namespace berth::server {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;
constexpr std::chrono::seconds kDrainTimeout(5);
constexpr mode_t kSocketMode = 0660;

std::string ErrnoText(int err) { return strerror(err); }

// The root and state directories: 0700, parents 0711. A directory that group or others can
// read is used as it is, with a warning (the operator may have meant it).
absl::Status MakeDaemonDir(const std::string& path) {
  BERTH_RETURN_IF_ERROR(MakeDirs(path, 0700));
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    BERTH_LOG(Warn) << path << " is accessible to group or others (mode "
                    << absl::StrFormat("%04o", st.st_mode & 07777) << ")";
  }
  return absl::OkStatus();
}

// The uuid persisted at <root>/uuid, created (atomically) on first start.
absl::StatusOr<std::string> LoadOrCreateUuid(const std::string& root) {
  std::string path = root + "/uuid";
  if (absl::StatusOr<std::string> text = ReadFile(path); text.ok()) {
    std::string uuid(absl::StripAsciiWhitespace(*text));
    if (uuid.size() == 36) {
      return uuid;
    }
    BERTH_LOG(Warn) << path << " does not hold a uuid; writing a new one";
  }
  std::string uuid = NewUuid();
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(path, uuid + "\n", 0600));
  return uuid;
}

// The Start()ed daemon that the fallback signal handler wakes: its stop eventfd, or -1.
std::atomic<int> g_signal_wake_fd{-1};
std::atomic<int> g_last_signal{0};

void OnTerminationSignal(int signo) {
  int saved_errno = errno;
  g_last_signal.store(signo);
  int fd = g_signal_wake_fd.load();
  if (fd >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof(one));
    (void)ignored;
  }
  errno = saved_errno;
}

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

struct Daemon::Impl {
  explicit Impl(const config::CommonOptions& opts) : options(opts) {}

  // Everything Start does after the checks on its arguments; on error Start undoes it.
  absl::Status StartLocked(Daemon* daemon) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // StartLocked's steps, in order.
  absl::Status PrepareRoot();  // root and state dirs, the uuid
  absl::Status StartMetrics(const std::shared_ptr<prometheus::Registry>& registry);
  absl::Status ChooseListener();  // systemd's socket, else a safe path for our own
  absl::Status BuildServer(prometheus::Registry& registry);
  absl::Status ServeActivatedSocket();
  absl::Status SecureOwnSocket();  // 0660, and remembered so Stop removes only ours
  absl::Status StartSignalLoop();
  void RequestStop();
  // Idempotent; the first caller drains and stops, later callers wait for it to finish.
  void Stop();
  void SignalLoop();
  void AcceptLoop();

  const config::CommonOptions options;
  std::vector<grpc::Service*> services;
  std::vector<PluginInfo> plugins;

  VersionService version_service;
  std::unique_ptr<IntrospectionService> introspection_service;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::unique_ptr<grpc::Server> server;

  int bound_port = 0;           // BuildServer's AddListeningPort result; 0: not bound
  std::string socket_path;      // the socket we created and remove on stop; empty otherwise
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  UniqueFd activated_listener;  // systemd's listening socket, when socket-activated
  UniqueFd stop_fd;             // eventfd, written once to stop; never drained
  UniqueFd signal_fd;
  struct sigaction old_sigterm {};
  struct sigaction old_sigint {};
  std::thread signal_thread;
  std::thread accept_thread;

  mutable absl::Mutex mu;
  bool started ABSL_GUARDED_BY(mu) = false;
  bool stop_requested ABSL_GUARDED_BY(mu) = false;
  std::string grpc_target ABSL_GUARDED_BY(mu);
  std::string metrics_endpoint ABSL_GUARDED_BY(mu);

  absl::Mutex stop_mu;  // held for the whole of Stop()
  bool stopped ABSL_GUARDED_BY(stop_mu) = false;
};

void Daemon::BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void Daemon::TuneAllocator() {
  // glibc serves blocks above its mmap threshold (128 KiB at first, adapting upwards only
  // after a free) with a fresh mmap each, and gives memory above the trim threshold back with
  // madvise at every free. A daemon that streams blobs in 1 MiB messages then pays a page
  // fault per 4 KiB of every message, twice over: measured on snapshotd's unpack, a quarter
  // of the daemons' CPU. Buffers up to 8 MiB come from the heap instead, and up to 64 MiB of
  // freed heap stays for the next message.
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

Daemon::Daemon(const config::CommonOptions& options)
    : impl_(std::make_unique<Impl>(options)), registry_(std::make_shared<prometheus::Registry>()) {
  TuneAllocator();
  BlockTerminationSignals();
  // Hold one reference to the gRPC library for the life of the process. Without it, the
  // server's destructor drops the last one and grpc_shutdown joins gRPC's executor thread,
  // which can sit in epoll_wait for up to ~10 s: a daemon would linger that long after
  // "stopped". The process exits right after the Daemon goes, so nothing needs the cleanup.
  grpc_init();
}

Daemon::~Daemon() {
  Shutdown();
  impl_->Stop();
  impl_.reset();  // the server's interceptor refers to registry_
}

void Daemon::AddService(grpc::Service* service) { impl_->services.push_back(service); }

void Daemon::AddPlugin(PluginInfo plugin) { impl_->plugins.push_back(std::move(plugin)); }

absl::Status Daemon::Start() {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->started) {
    return absl::FailedPreconditionError("daemon already started");
  }
  absl::Status st = impl_->StartLocked(this);
  if (!st.ok()) {
    // Undo in reverse; nothing was announced yet.
    if (impl_->server != nullptr) {
      impl_->server->Shutdown(std::chrono::system_clock::now());
      impl_->server->Wait();
      impl_->server.reset();
    }
    impl_->activated_listener.Reset();
    impl_->exposer.reset();
    if (!impl_->socket_path.empty()) {
      unlink(impl_->socket_path.c_str());
      impl_->socket_path.clear();
    }
    return st;
  }
  impl_->started = true;
  return absl::OkStatus();
}

absl::Status Daemon::Impl::StartLocked(Daemon* daemon) {
  BERTH_RETURN_IF_ERROR(PrepareRoot());
  // Metrics first: a taken port fails Start before anything is bound.
  BERTH_RETURN_IF_ERROR(StartMetrics(daemon->registry_));
  BERTH_RETURN_IF_ERROR(ChooseListener());
  BERTH_RETURN_IF_ERROR(BuildServer(*daemon->registry_));
  BERTH_RETURN_IF_ERROR(activated_listener.valid() ? ServeActivatedSocket() : SecureOwnSocket());
  BERTH_RETURN_IF_ERROR(StartSignalLoop());
  if (activated_listener.valid()) {
    accept_thread = std::thread([this] { AcceptLoop(); });
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  sd_notify(0, "READY=1");
  BERTH_LOG(Info) << (options.daemon.empty() ? "daemon" : options.daemon) << " serving on "
                  << grpc_target
                  << (metrics_endpoint.empty() ? "" : absl::StrCat(", metrics on http://",
                                                                  metrics_endpoint, "/metrics"));
  return absl::OkStatus();
}

absl::Status Daemon::Impl::PrepareRoot() {
  if (options.root.empty()) {
    return absl::InvalidArgumentError("root directory is not set");
  }
  BERTH_RETURN_IF_ERROR(MakeDaemonDir(options.root));
  if (!options.state.empty()) {
    BERTH_RETURN_IF_ERROR(MakeDaemonDir(options.state));
  }
  BERTH_ASSIGN_OR_RETURN(std::string uuid, LoadOrCreateUuid(options.root));
  introspection_service = std::make_unique<IntrospectionService>(plugins, uuid);
  return absl::OkStatus();
}

absl::Status Daemon::Impl::StartMetrics(const std::shared_ptr<prometheus::Registry>& registry) {
  if (options.metrics_address.empty()) {
    return absl::OkStatus();
  }
  try {
    exposer = std::make_unique<prometheus::Exposer>(options.metrics_address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics address ", options.metrics_address, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  std::vector<int> ports = exposer->GetListeningPorts();
  std::string host = options.metrics_address.substr(0, options.metrics_address.rfind(':'));
  metrics_endpoint = absl::StrCat(host.empty() ? "0.0.0.0" : host, ":",
                                  ports.empty() ? 0 : ports.front());
  return absl::OkStatus();
}

absl::Status Daemon::Impl::ChooseListener() {
  BERTH_ASSIGN_OR_RETURN(int activated, SocketFromSystemd(options.address));
  activated_listener.Reset(activated);
  if (activated_listener.valid()) {
    return absl::OkStatus();
  }
  if (options.address.empty()) {
    return absl::InvalidArgumentError("socket address is not set");
  }
  return PrepareSocketPath(options.address);
}

absl::Status Daemon::Impl::BuildServer(prometheus::Registry& registry) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  if (!activated_listener.valid()) {
    builder.AddListeningPort(absl::StrCat("unix:", options.address),
                             grpc::InsecureServerCredentials(), &bound_port);
  }
  builder.RegisterService(&version_service);
  builder.RegisterService(introspection_service.get());
  for (grpc::Service* service : services) {
    builder.RegisterService(service);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<MetricsInterceptorFactory>(registry));
  builder.experimental().SetInterceptorCreators(std::move(creators));

  if (activated_listener.valid()) {
    server = builder.BuildAndStart();
  } else {
    // The socket is bound inside BuildAndStart. With this umask it is born 0600, so nobody
    // but us can connect before SecureOwnSocket's chmod. umask is process-wide: Start runs
    // before the daemon creates files from other threads.
    mode_t old_umask = umask(0177);
    server = builder.BuildAndStart();
    umask(old_umask);
  }
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "serve gRPC on ", activated_listener.valid() ? "the socket systemd passed" : options.address,
        ": failed to start (see grpc's log above)"));
  }
  return absl::OkStatus();
}

absl::Status Daemon::Impl::ServeActivatedSocket() {
  int flags = fcntl(activated_listener.get(), F_GETFL);
  if (flags < 0 || fcntl(activated_listener.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "socket activation: set the listening socket non-blocking");
  }
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  std::string path;
  if (getsockname(activated_listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
      len > offsetof(sockaddr_un, sun_path) && addr.sun_path[0] != '\0') {
    path = std::string(addr.sun_path, strnlen(addr.sun_path, sizeof(addr.sun_path)));
  }
  grpc_target = path.empty() ? absl::StrCat("fd:", activated_listener.get())
                             : absl::StrCat("unix:", path);
  return absl::OkStatus();
}

absl::Status Daemon::Impl::SecureOwnSocket() {
  if (bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("bind socket ", options.address));
  }
  socket_path = options.address;
  if (chmod(socket_path.c_str(), kSocketMode) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chmod socket ", socket_path));
  }
  struct stat st;
  if (lstat(socket_path.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat socket ", socket_path));
  }
  if (!S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != kSocketMode) {
    return absl::InternalError(
        absl::StrCat("socket ", socket_path, " is not a socket of mode 0660 after chmod"));
  }
  socket_dev = st.st_dev;
  socket_ino = st.st_ino;
  grpc_target = absl::StrCat("unix:", socket_path);
  return absl::OkStatus();
}

absl::Status Daemon::Impl::StartSignalLoop() {
  stop_fd.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  sigset_t signals = TerminationSignals();
  signal_fd.Reset(signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!stop_fd.valid() || !signal_fd.valid()) {
    return ErrnoStatus(errno, "create eventfd/signalfd");
  }
  // Signals reach the signalfd while every thread blocks them; a thread that does not (started
  // before BlockTerminationSignals) gets the handler, which wakes the same loop.
  g_signal_wake_fd.store(stop_fd.get());
  struct sigaction action {};
  action.sa_handler = OnTerminationSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, &old_sigterm);
  sigaction(SIGINT, &action, &old_sigint);
  signal_thread = std::thread([this] { SignalLoop(); });
  return absl::OkStatus();
}

void Daemon::Impl::SignalLoop() {
  pollfd fds[2] = {{signal_fd.get(), POLLIN, 0}, {stop_fd.get(), POLLIN, 0}};
  for (;;) {
    int n = poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      BERTH_LOG(Error) << "signal loop: poll: " << ErrnoText(errno);
      break;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      if (read(signal_fd.get(), &info, sizeof(info)) == sizeof(info)) {
        BERTH_LOG(Info) << "received " << strsignal(static_cast<int>(info.ssi_signo))
                        << ", shutting down";
        break;
      }
    }
    if (fds[1].revents & POLLIN) {
      if (int signo = g_last_signal.exchange(0); signo != 0) {
        BERTH_LOG(Info) << "received " << strsignal(signo) << ", shutting down";
      }
      break;
    }
  }
  RequestStop();
}

void Daemon::Impl::AcceptLoop() {
  pollfd fds[2] = {{activated_listener.get(), POLLIN, 0}, {stop_fd.get(), POLLIN, 0}};
  for (;;) {
    int n = poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 || (fds[1].revents & POLLIN)) {
      return;
    }
    int fd = accept4(activated_listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      grpc::AddInsecureChannelFromFd(server.get(), fd);  // grpc owns fd now
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      continue;
    }
    // EMFILE and friends: the listener stays readable, so back off instead of spinning.
    BERTH_LOG(Warn) << "accept: " << ErrnoText(errno);
    pollfd stop = {stop_fd.get(), POLLIN, 0};
    if (poll(&stop, 1, 100) > 0) {
      return;
    }
  }
}

void Daemon::Impl::RequestStop() {
  {
    absl::MutexLock lock(&mu);
    stop_requested = true;
  }
  if (stop_fd.get() >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(stop_fd.get(), &one, sizeof(one));
    (void)ignored;
  }
}

void Daemon::Impl::Stop() {
  absl::MutexLock stop_lock(&stop_mu);
  {
    absl::MutexLock lock(&mu);
    if (!started || stopped) {
      return;
    }
  }
  stopped = true;
  sd_notify(0, "STOPPING=1");
  BERTH_LOG(Info) << (options.daemon.empty() ? "daemon" : options.daemon)
                  << " stopping: draining calls for up to " << kDrainTimeout.count() << "s";
  if (accept_thread.joinable()) {
    accept_thread.join();
  }
  activated_listener.Reset();
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + kDrainTimeout);
  server->Wait();
  if (signal_thread.joinable()) {
    signal_thread.join();
  }
  int expected = stop_fd.get();
  if (g_signal_wake_fd.compare_exchange_strong(expected, -1)) {
    sigaction(SIGTERM, &old_sigterm, nullptr);
    sigaction(SIGINT, &old_sigint, nullptr);
  }
  exposer.reset();
  // Remove our socket unless something else has replaced it meanwhile (grpc may have already).
  struct stat st;
  if (!socket_path.empty() && lstat(socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev &&
      st.st_ino == socket_ino) {
    unlink(socket_path.c_str());
  }
  BERTH_LOG(Info) << (options.daemon.empty() ? "daemon" : options.daemon) << " stopped";
}

void Daemon::Wait() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (!impl_->started) {
      return;
    }
    impl_->mu.Await(absl::Condition(&impl_->stop_requested));
  }
  impl_->Stop();
}

void Daemon::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (!impl_->started) {
      impl_->stop_requested = true;
      return;
    }
  }
  impl_->RequestStop();
}

void Daemon::SetServing(bool serving) {
  // Under mu: a stop is requested under mu before Stop sets NOT_SERVING, so this never undoes it.
  absl::MutexLock lock(&impl_->mu);
  if (!impl_->started || impl_->stop_requested) {
    return;
  }
  impl_->server->GetHealthCheckService()->SetServingStatus(serving);
}

std::string Daemon::grpc_target() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->grpc_target;
}

std::string Daemon::metrics_endpoint() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->metrics_endpoint;
}

}  // namespace berth::server
