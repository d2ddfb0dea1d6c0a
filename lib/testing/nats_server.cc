// NatsServer and the test PKI (testing.h): a real nats-server per test, on a port it keeps
// while stopped.

#include "lib/testing/testing.h"


#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/testing/internal.h"

namespace berth::testing {

using internal::CanConnectTcp;
using internal::Die;

// ---------------------------------------------------------------------------------------------
// NatsServer

namespace {

std::string NatsServerBinary() {
  for (const char* candidate : {"/usr/bin/nats-server", "/usr/sbin/nats-server"}) {
    if (access(candidate, X_OK) == 0) {
      return candidate;
    }
  }
  return "nats-server";  // PATH
}

// Whether 127.0.0.1:port can be bound right now.
bool CanBindTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // as nats-server does
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// The first port the kernel hands out on its own (bind to port 0, outgoing connections).
int FirstEphemeralPort() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768;
  range >> lo;
  return lo;
}

}  // namespace

// A port below the kernel's ephemeral range, so no bind to port 0 and no outgoing connection
// (another test's FreeTcpPort, a client socket) can take it while nats-server is restarted,
// and reserved against the other berth tests by an flock'd file held until the destructor.
NatsServer::PortReservation::PortReservation() {
  std::string dir = "/tmp/berth-test-ports";
  mkdir(dir.c_str(), 01777);
  int hi = std::min(FirstEphemeralPort(), 65536) - 1;
  int lo = std::max(10000, hi - 20000);
  if (hi <= lo) {
    Die(absl::StrCat("no port range below the ephemeral ports (", hi + 1, ") for nats-server"));
  }
  uint32_t seed = static_cast<uint32_t>(getpid()) ^
                  static_cast<uint32_t>(absl::ToUnixNanos(absl::Now()));
  for (int attempt = 0; attempt < 1000; ++attempt) {
    seed = seed * 1103515245u + 12345u;
    int port = lo + static_cast<int>((seed >> 8) % static_cast<uint32_t>(hi - lo));
    int fd = open(absl::StrCat(dir, "/", port, ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC,
                  0666);
    if (fd < 0) {
      continue;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && CanBindTcp(port)) {
      port_ = port;
      lock_fd_ = fd;
      return;
    }
    close(fd);
  }
  Die("could not reserve a port for nats-server in 1000 attempts");
}

NatsServer::PortReservation::~PortReservation() {
  if (lock_fd_ >= 0) {
    close(lock_fd_);  // releases the flock
  }
}

NatsServer::NatsServer() : NatsServer(Options()) {}

NatsServer::NatsServer(Options options)
    : options_(std::move(options)), port_(reservation_.port()) {
  if (options_.start) {
    Start();
  }
}

NatsServer::~NatsServer() { Stop(); }

void NatsServer::Start() {
  if (process_ != nullptr) {
    return;
  }
  std::vector<std::string> argv = {NatsServerBinary(), "-a", "127.0.0.1", "-p",
                                   absl::StrCat(port_), "-n", absl::StrCat("berth-test-", port_)};
  if (!options_.config_file.empty()) {
    argv.insert(argv.end(), {"-c", options_.config_file});
  }
  if (options_.jetstream) {
    argv.insert(argv.end(), {"-js", "-sd", dir_.Join("jetstream")});
  }
  if (!options_.user.empty() || !options_.password.empty()) {
    argv.insert(argv.end(), {"--user", options_.user, "--pass", options_.password});
  }
  if (!options_.tls_cert.empty()) {
    argv.insert(argv.end(),
                {"--tls", "--tlscert", options_.tls_cert, "--tlskey", options_.tls_key});
    if (!options_.tls_verify_clients_ca.empty()) {
      argv.insert(argv.end(), {"--tlsverify", "--tlscacert", options_.tls_verify_clients_ca});
    }
  }
  Process::Options popts;
  popts.argv = argv;
  popts.log_dir = dir_.path();
  process_ = std::make_unique<Process>(std::move(popts));
  // Ready means our process said so and still runs: a server that lost the port exits.
  bool ready = testing::WaitFor(
      [&] {
        if (process_->TryReap()) {
          return true;  // exited: stop waiting, handled below
        }
        return process_->ReadLog().find("Server is ready") != std::string::npos &&
               CanConnectTcp(port_);
      },
      absl::Seconds(20));
  if (ready && process_->running()) {
    return;
  }
  std::string log = process_->ReadLog();
  process_->Kill();
  process_.reset();
  Die(absl::StrCat("nats-server on port ", port_, " did not become ready; log:\n", log));
}

void NatsServer::Stop() {
  if (process_ == nullptr) {
    return;
  }
  process_->Terminate(absl::Seconds(10));
  last_log_ = process_->ReadLog();
  process_.reset();
}

void NatsServer::Kill() {
  if (process_ == nullptr) {
    return;
  }
  process_->Kill();
  last_log_ = process_->ReadLog();
  process_.reset();
}

std::string NatsServer::url() const {
  return absl::StrCat(options_.tls_cert.empty() ? "nats" : "tls", "://127.0.0.1:", port_);
}

TestPki MakeTestPki(const std::string& dir) {
  TestPki pki;
  pki.ca = dir + "/ca.pem";
  pki.server_cert = dir + "/server.pem";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.pem";
  pki.client_key = dir + "/client.key";
  pki.other_ca = dir + "/other-ca.pem";
  // EC P-256 keys, one day of validity; each leaf names its use (Go's TLS checks it).
  constexpr char kScript[] = R"sh(set -e
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() {
  openssl req -x509 $key -days 1 -subj "/CN=$1" -keyout "$2.key" -out "$2.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {
  openssl req $key -subj "/CN=$1" -keyout "$2.key" -out "$2.csr"
  openssl x509 -req -in "$2.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile "$2.ext" -out "$2.pem"
}
printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'extendedKeyUsage=serverAuth' \
  'keyUsage=critical,digitalSignature' > server.ext
printf '%s\n' 'extendedKeyUsage=clientAuth' 'keyUsage=critical,digitalSignature' > client.ext
ca berth-test-ca ca
ca berth-test-other-ca other-ca
leaf localhost server
leaf berth-test-client client
)sh";
  std::string script = absl::StrCat("cd '", dir, "' && ", kScript);
  int code = 0;
  std::string out = RunCommand(std::vector<std::string>{"/bin/sh", "-c", script}, &code);
  if (code != 0) {
    Die(absl::StrCat("making test certificates with openssl failed (", code, "):\n", out));
  }
  return pki;
}

std::string NatsServer::credentials() const {
  if (options_.user.empty() && options_.password.empty()) {
    return "";
  }
  return absl::StrCat(options_.user, ":", options_.password);
}

std::string NatsServer::ReadLog() const {
  return process_ != nullptr ? process_->ReadLog() : last_log_;
}

}  // namespace berth::testing
