#pragma once

// Real peers for berth's integration tests, each started in a directory the test owns and
// stopped by the object that started it (by PID): a contentd, a docker-registry, a containerd,
// plus ctr and the test image script. Nothing here sleeps to let something happen; readiness is
// polled with a deadline (lib/testing WaitFor*). Not thread-safe: use from the test's thread.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "containerd/services/content/v1/content.grpc.pb.h"
#include "lib/testing/testing.h"

namespace berth::integration {

// The output (stdout+stderr) and exit code of a command.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs `ctr --address address [-n ns] args...`. An empty `ns` leaves ctr's default ("default").
CommandResult Ctr(const std::string& address, const std::string& ns,
                  const std::vector<std::string>& args);

// Runs `argv` (argv[0] a path) on the slave side of a new pseudo-terminal of `cols` x `rows`,
// its stdin, stdout, stderr and controlling terminal, and returns all it wrote there (with the
// terminal's own translations: "\r\n" for "\n") and its exit code (-1 when it did not exit).
CommandResult RunInTerminal(const std::vector<std::string>& argv, int cols = 100, int rows = 30);

// One daemon process run from `dir` (its logs go there), started again as often as a test
// wants: the logs of every start are kept for ReadLog. The process part of Contentd, Snapshotd
// and Containerd. The destructor SIGKILLs a running process (through testing::Process).
class DaemonProcess {
 public:
  explicit DaemonProcess(std::string dir) : dir_(std::move(dir)) {}
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Spawns `argv` and polls `ready` for up to `timeout`. Returns whether it came up: `ready`
  // held and the process has not exited.
  bool Start(const std::vector<std::string>& argv, const std::function<bool()>& ready,
             absl::Duration timeout);
  // Start, ready once `socket` accepts connections (up to 20 s). Otherwise Unavailable,
  // naming `name` and `argv`, with the log.
  absl::Status StartServing(absl::string_view name, const std::vector<std::string>& argv,
                            const std::string& socket);
  // SIGKILL and reap.
  void Kill();
  // SIGTERM, wait up to `timeout` (then SIGKILL); returns the wait status (0 when not running).
  int Stop(absl::Duration timeout);
  bool running() const { return process_ != nullptr && process_->running(); }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  // Every log written by every start so far.
  std::string ReadLog() const;

 private:
  std::string dir_;
  std::unique_ptr<testing::Process> process_;
  std::vector<std::string> old_logs_;
};

// A contentd under `dir`: root dir/root, state dir/state, socket dir/cd.sock. Start() waits until
// the socket accepts connections.
class Contentd {
 public:
  struct Options {
    std::string default_namespace = "default";
    std::string nats_url;       // empty: no --nats-url
    int metrics_port = 0;       // 0: no --metrics-address
    std::string log_level = "debug";
    std::vector<std::string> extra_args;
    std::vector<std::string> env;  // "NAME=VALUE" added to its environment (crash points)
  };
  Contentd(std::string dir, Options options);
  ~Contentd();  // SIGKILLs a running daemon (through Process)
  Contentd(const Contentd&) = delete;
  Contentd& operator=(const Contentd&) = delete;

  // Starts the daemon and waits (up to 20 s) for its socket. On failure the error carries the
  // daemon's log. Starting again after Kill/Stop reuses the same root, state and socket.
  absl::Status Start();
  // SIGKILL and reap.
  void Kill();
  // SIGTERM, wait; returns the wait status (0 when not running).
  int Stop();
  bool running() const { return process_.running(); }

  const std::string& address() const { return address_; }
  const std::string& root() const { return root_; }
  const std::string& state() const { return state_; }
  pid_t pid() const { return process_.pid(); }
  // Every log written by every start so far.
  std::string ReadLog() const { return process_.ReadLog(); }

 private:
  std::string dir_;
  Options options_;
  std::string root_;
  std::string state_;
  std::string address_;
  DaemonProcess process_;
};

// A docker-registry (distribution 2.x) on 127.0.0.1:<free port>, storing on the filesystem under
// `dir`; plain HTTP and anonymous unless the options say otherwise.
class Registry {
 public:
  struct Options {
    std::string tls_cert;  // both set: HTTPS with this certificate
    std::string tls_key;
    std::string tls_client_ca;  // set (with TLS): clients must present a certificate it signed
    std::string tls_probe_cert;  // with tls_client_ca: the pair Start's readiness probe shows
    std::string tls_probe_key;
    std::string htpasswd;  // set: Basic auth against this htpasswd file (bcrypt entries)
    // All set: token auth (`auth: token:`); the registry trusts JWTs signed by a key whose
    // certificate is in `token_rootcertbundle` and issued by `token_issuer` for `token_service`.
    std::string token_realm;
    std::string token_service;
    std::string token_issuer;
    std::string token_rootcertbundle;
  };
  explicit Registry(std::string dir) : Registry(std::move(dir), Options()) {}
  Registry(std::string dir, Options options);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Starts and waits until /v2/ answers. Retries with another port if the one picked was taken.
  absl::Status Start();
  int Stop();

  int port() const { return port_; }
  // "127.0.0.1:<port>"
  std::string host() const;
  std::string ReadLog() const;
  // How many requests whose URI contains `uri_part` its access log shows as answered.
  int CountRequests(absl::string_view uri_part) const;

  // Pushes the OCI layout image `layout:tag` to `<host>/<name>:<tag>` with skopeo (TLS not
  // verified), with `credentials` ("user:password") when not empty.
  absl::Status Push(const std::string& layout, const std::string& tag, const std::string& name,
                    const std::string& credentials = "");

 private:
  std::string ConfigText() const;

  std::string dir_;
  Options options_;
  int port_ = 0;
  std::unique_ptr<testing::Process> process_;
};

// A containerd with its own root, state, gRPC socket and config under `dir`, CRI disabled.
// With `content_proxy_address` set, its content store is contentd at that address
// (`[proxy_plugins.berth] type = "content"`) and its local content plugin is disabled, which is
// what makes the metadata plugin use the proxy (containerd 1.6 hands the metadata plugin an
// arbitrary content plugin when several are loaded).
class Containerd {
 public:
  struct Options {
    std::string content_proxy_address;
    // Keeps the GC scheduler from running. containerd collects content no image, lease or gc.root label
    // holds, soon after it is written: a blob `ctr content ingest` just wrote can vanish.
    bool disable_gc = false;
    // With it set, snapshotd at that address is containerd's snapshotter
    // `snapshot_proxy_name` (`[proxy_plugins.<name>] type = "snapshot"`), for
    // `ctr ... --snapshotter <name>`.
    std::string snapshot_proxy_address;
    std::string snapshot_proxy_name = "berth-snapshotd";
  };
  Containerd(std::string dir, Options options);
  ~Containerd();
  Containerd(const Containerd&) = delete;
  Containerd& operator=(const Containerd&) = delete;

  // Writes the config, starts containerd and waits (up to 30 s) until `ctr version` answers.
  absl::Status Start();
  // SIGTERM, wait; returns the wait status (0 when not running).
  int Stop();
  // SIGKILL and reap.
  void Kill();
  bool running() const { return process_.running(); }

  const std::string& address() const { return address_; }
  const std::string& root() const { return root_; }
  const std::string& config_path() const { return config_path_; }
  std::string ReadLog() const { return process_.ReadLog(); }

  // The config file's text for these options (exposed for the benchmark and for failures).
  std::string ConfigText() const;

 private:
  std::string dir_;
  Options options_;
  std::string root_;
  std::string state_;
  std::string address_;
  std::string config_path_;
  DaemonProcess process_;
};

// Content API calls through the generated stubs, in namespace `ns` (sent as the
// containerd-namespace header; empty: no header). Deadline 30 s each.
// Writes `data` in one COMMIT message under `ref`; returns the committed digest.
absl::StatusOr<std::string> CommitBlob(containerd::services::content::v1::Content::Stub& stub,
                                       const std::string& ns, const std::string& ref,
                                       const std::string& data);
absl::Status DeleteBlob(containerd::services::content::v1::Content::Stub& stub,
                        const std::string& ns, const std::string& digest);

// Builds the tiny test image (integration/scripts/make-test-image.sh) into the OCI layout
// `layout` (which must not exist) under `tag`.
absl::Status MakeTestImage(const std::string& layout, const std::string& tag);

// The files under `dir`, recursively, as paths relative to it (regular files only), sorted.
std::vector<std::string> ListFiles(const std::string& dir);

// The whole file, or an error.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// sha256:<hex> of `data`.
std::string Sha256Digest(const std::string& data);

// `size` pseudo-random bytes from `seed` (deterministic).
std::string RandomBytes(size_t size, uint32_t seed);

// GET http://127.0.0.1:port/path; stores the HTTP status in *code (0 when the request failed,
// and the body is curl's reason).
std::string HttpGet(int port, const std::string& path, long* code);

// Prometheus text format: the sample lines of metric `name` (exactly that name, with or
// without labels) whose label text contains every string in `label_parts`, and the sum of
// their values (-1 if there are none).
std::vector<std::string> MetricSamples(const std::string& text, const std::string& name,
                                       const std::vector<std::string>& label_parts = {});
double MetricValue(const std::string& text, const std::string& name,
                   const std::vector<std::string>& label_parts = {});

}  // namespace berth::integration
