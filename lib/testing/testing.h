#pragma once

// Helpers shared by every test: temp dirs, child processes, free ports, polling with a deadline,
// and a real nats-server. Nothing here sleeps to "let something happen": WaitFor polls a
// condition until a deadline. Processes are always reaped by the object that spawned them.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace berth::testing {

// A fresh directory /tmp/b-XXXXXX (short, so unix socket paths inside stay well below 108
// bytes). The destructor removes the tree recursively; it never crosses into mounts (entries on
// another device are left alone) and unmounts nothing.
class TempDir {
 public:
  TempDir();  // CHECK-fails if mkdtemp fails.
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Join(absl::string_view name) const;

 private:
  std::string path_;
};

// Removes `path` and everything below it (not following symlinks, not crossing devices).
// Missing paths are fine. Returns false if something could not be removed.
bool RemoveTree(const std::string& path);

// A child process: argv[0] is run as given (execvp semantics: searched in PATH when it has no
// slash), with the parent's environment plus `env` (which overrides), stdin /dev/null and
// stdout+stderr appended to `<log_dir>/<basename(argv[0])>-<n>.log`. The destructor kills
// (SIGKILL) and reaps it if it is still running. Not thread-safe.
class Process {
 public:
  struct Options {
    std::vector<std::string> argv;
    std::map<std::string, std::string> env;  // added to / overriding the parent's environment
    std::string log_dir;                      // required; the log file goes here
    std::string cwd;                          // empty: inherit
    // The child gets SIGKILL when the thread that spawned it exits (PR_SET_PDEATHSIG), so a
    // crashed test leaves no daemons behind. Spawn from a thread that outlives the child.
    bool kill_with_parent = true;
  };

  // Spawns the child. CHECK-fails on an empty argv or an unusable log dir; a program that
  // cannot be exec'd exits with status 127 and says why in its log.
  explicit Process(Options options);
  // Shorthand: argv, log_dir, no extra env.
  Process(std::vector<std::string> argv, const std::string& log_dir);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // true until the child has been reaped by Wait/Kill/Terminate/TryReap.
  bool running() const { return !reaped_; }

  // Sends `sig` (no-op once reaped).
  void Signal(int sig);
  // SIGKILL and reap. Returns the wait status (as from waitpid).
  int Kill();
  // SIGTERM, wait up to `timeout`, then SIGKILL. Returns the wait status.
  int Terminate(absl::Duration timeout = absl::Seconds(10));
  // Blocks until the child exits; returns the raw wait status (use WIFEXITED/WEXITSTATUS).
  // Returns the same status again when already reaped.
  int Wait();
  // Waits up to `timeout`; true (and *status set when not null) if the child has exited.
  bool WaitFor(absl::Duration timeout, int* status = nullptr);
  // Reaps without blocking; true if the child has exited.
  bool TryReap();

  // The log file's contents so far.
  std::string ReadLog() const;

 private:
  void Spawn(Options options);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string log_path_;
};

// <build dir>/relative, e.g. BinaryPath("services/contentd/contentd"): the build this test was
// built in, or $BERTH_BINARY_DIR when set (a build moved elsewhere).
std::string BinaryPath(absl::string_view relative);
// <source dir>/relative: the tree this test was built from, or $BERTH_SOURCE_DIR when set.
std::string SourcePath(absl::string_view relative);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close). Another
// process may take it before you do; use port 0 directly where the program supports it.
int FreeTcpPort();

// Polls `cond` every 10 ms until it returns true (-> true) or `timeout` passes (-> false; cond is
// evaluated one last time at the deadline).
bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout);

// Waits (up to `timeout`) until process `pid` no longer runs: gone, or a zombie (an orphan is
// reaped by PID 1 some time after it died; that is not waited for).
bool WaitUntilNotRunning(int pid, absl::Duration timeout);

// Waits until a connect() to the unix socket at `path` succeeds.
bool WaitForUnixSocket(const std::string& path, absl::Duration timeout);
// Waits until a connect() to 127.0.0.1:port succeeds.
bool WaitForTcpPort(int port, absl::Duration timeout);

// Runs argv (execvp semantics) to completion and returns its stdout and stderr combined. Stores
// the exit code in *exit_code when not null (128+signal when killed, 127 when it could not run).
std::string RunCommand(const std::vector<std::string>& argv, int* exit_code = nullptr);
// Same, for a shell command line run with /bin/sh -c.
std::string RunCommand(const std::string& shell_command, int* exit_code = nullptr);

// A private PKI for TLS tests, made with the openssl command in `dir`: a CA, a server
// certificate from it for localhost and 127.0.0.1, a client certificate from it, and a second
// CA that signed nothing the server shows. PEM files; CHECK-fails when openssl fails.
struct TestPki {
  std::string ca;           // ca.pem
  std::string server_cert;  // server.pem (DNS:localhost, IP:127.0.0.1), server.key
  std::string server_key;
  std::string client_cert;  // client.pem (clientAuth), client.key
  std::string client_key;
  std::string other_ca;     // other-ca.pem
};
TestPki MakeTestPki(const std::string& dir);

// A real nats-server (/usr/bin/nats-server or /usr/sbin/nats-server) on 127.0.0.1 with a port
// fixed at construction and JetStream enabled (storage in a temp dir owned by this object), so
// Stop() + Start() restarts it on the same port with the same streams. The port stays ours
// while the server is down: it lies below the kernel's ephemeral range (so no bind to port 0
// and no outgoing connection is given it) and is reserved against other berth tests running
// in parallel by a lock file under /tmp/berth-test-ports held for the object's life. Not
// thread-safe.
class NatsServer {
 public:
  struct Options {
    std::string user;      // both empty: no authentication
    std::string password;
    bool jetstream = true;
    bool start = true;     // start in the constructor
    // Both set: clients must speak TLS, and the server shows this certificate.
    std::string tls_cert;
    std::string tls_key;
    // Set too: clients must also present a certificate signed by this CA.
    std::string tls_verify_clients_ca;
    // A config file (-c), e.g. the one deploy/ ships, with no listen line (the server listens
    // on its port here). Set jetstream = false when the file has its own jetstream block.
    std::string config_file;
  };
  NatsServer();
  explicit NatsServer(Options options);
  ~NatsServer();  // stops the server
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Starts the server and waits (up to 20 s) until it accepts TCP connections. CHECK-fails on
  // timeout (with the server's log). No-op when running.
  void Start();
  // SIGTERM (then SIGKILL after 10 s) and reap. No-op when stopped.
  void Stop();
  // SIGKILL and reap: no shutdown of JetStream, no goodbye to clients. No-op when stopped.
  void Kill();
  bool running() const { return process_ != nullptr; }

  int port() const { return port_; }
  // "nats://127.0.0.1:<port>" (credentials are not embedded; see credentials()).
  std::string url() const;
  // "user:password", or empty without authentication.
  std::string credentials() const;
  const std::string& dir() const { return dir_.path(); }
  std::string ReadLog() const;

 private:
  class PortReservation {
   public:
    PortReservation();
    ~PortReservation();
    PortReservation(const PortReservation&) = delete;
    PortReservation& operator=(const PortReservation&) = delete;
    int port() const { return port_; }

   private:
    int port_ = 0;
    int lock_fd_ = -1;
  };

  Options options_;
  TempDir dir_;
  PortReservation reservation_;
  int port_;
  std::unique_ptr<Process> process_;
  std::string last_log_;
};

}  // namespace berth::testing
