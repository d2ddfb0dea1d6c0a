#include "lib/server/daemon.h"

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "containerd/services/introspection/v1/introspection.grpc.pb.h"
#include "containerd/services/version/v1/version.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "lib/base/grpc_client.h"
#include "lib/server/version.h"

namespace berth::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace introspection = containerd::services::introspection::v1;
namespace version = containerd::services::version::v1;
namespace health = grpc::health::v1;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-server-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  config::CommonOptions Options(const std::string& name = "d") {
    config::CommonOptions options;
    options.daemon = "testd";
    options.root = dir_ + "/" + name + "/root";
    options.state = dir_ + "/" + name + "/state";
    options.address = dir_ + "/" + name + ".sock";
    return options;
  }

  static grpc::Status Check(const std::string& address,
                            health::HealthCheckResponse* response) {
    auto stub = health::Health::NewStub(Dial(address));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub->Check(&context, health::HealthCheckRequest(), response);
  }

  static bool Serving(const std::string& address) {
    health::HealthCheckResponse response;
    return Check(address, &response).ok() &&
           response.status() == health::HealthCheckResponse::SERVING;
  }

  std::string dir_;
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_mode;
}

TEST_F(DaemonTest, ServesHealthVersionAndIntrospectionOnA0660Socket) {
  config::CommonOptions options = Options();
  Daemon daemon(options);
  daemon.AddPlugin({"io.containerd.content.v1", "content"});
  daemon.AddPlugin({"io.containerd.snapshotter.v1", "overlayfs"});
  ASSERT_TRUE(daemon.Start().ok());
  EXPECT_EQ(daemon.grpc_target(), "unix:" + options.address);
  EXPECT_EQ(daemon.metrics_endpoint(), "");

  mode_t mode = ModeOf(options.address);
  EXPECT_TRUE(S_ISSOCK(mode));
  EXPECT_EQ(mode & 07777, 0660u);
  EXPECT_EQ(ModeOf(options.root) & 07777, 0700u);
  EXPECT_EQ(ModeOf(options.state) & 07777, 0700u);

  health::HealthCheckResponse health_response;
  ASSERT_TRUE(Check(options.address, &health_response).ok());
  EXPECT_EQ(health_response.status(), health::HealthCheckResponse::SERVING);

  auto channel = Dial(options.address);
  {
    auto stub = version::Version::NewStub(channel);
    grpc::ClientContext context;
    version::VersionResponse response;
    ASSERT_TRUE(stub->Version(&context, google::protobuf::Empty(), &response).ok());
    EXPECT_EQ(response.version(), BerthVersion());
    EXPECT_FALSE(response.version().empty());
    EXPECT_FALSE(response.revision().empty());
  }
  auto stub = introspection::Introspection::NewStub(channel);
  {
    grpc::ClientContext context;
    introspection::PluginsResponse response;
    ASSERT_TRUE(stub->Plugins(&context, introspection::PluginsRequest(), &response).ok());
    ASSERT_EQ(response.plugins_size(), 2);
    EXPECT_EQ(response.plugins(0).type(), "io.containerd.content.v1");
    EXPECT_EQ(response.plugins(0).id(), "content");
  }
  {
    grpc::ClientContext context;
    introspection::PluginsRequest request;
    request.add_filters("type==io.containerd.snapshotter.v1");
    introspection::PluginsResponse response;
    ASSERT_TRUE(stub->Plugins(&context, request, &response).ok());
    ASSERT_EQ(response.plugins_size(), 1);
    EXPECT_EQ(response.plugins(0).id(), "overlayfs");
  }
  {
    grpc::ClientContext context;
    introspection::PluginsRequest request;
    request.add_filters("labels.x==y");
    introspection::PluginsResponse response;
    EXPECT_EQ(stub->Plugins(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  std::string uuid;
  {
    grpc::ClientContext context;
    introspection::ServerResponse response;
    ASSERT_TRUE(stub->Server(&context, google::protobuf::Empty(), &response).ok());
    uuid = response.uuid();
    EXPECT_EQ(uuid.size(), 36u);
    std::ifstream in(options.root + "/uuid");
    std::string stored;
    in >> stored;
    EXPECT_EQ(stored, uuid);
  }

  daemon.Shutdown();
  daemon.Wait();
  EXPECT_FALSE(std::filesystem::exists(options.address)) << "socket removed on stop";

  // The uuid survives a restart.
  Daemon again(options);
  ASSERT_TRUE(again.Start().ok());
  grpc::ClientContext context;
  introspection::ServerResponse response;
  ASSERT_TRUE(introspection::Introspection::NewStub(Dial(options.address))
                  ->Server(&context, google::protobuf::Empty(), &response)
                  .ok());
  EXPECT_EQ(response.uuid(), uuid);
}

TEST_F(DaemonTest, RefusesALiveSocket) {
  config::CommonOptions options = Options();
  Daemon first(options);
  ASSERT_TRUE(first.Start().ok());

  config::CommonOptions second_options = Options("second");
  second_options.address = options.address;
  Daemon second(second_options);
  absl::Status st = second.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(options.address));
  // The first daemon is untouched.
  EXPECT_TRUE(Serving(options.address));
}

TEST_F(DaemonTest, RefusesARegularFile) {
  config::CommonOptions options = Options();
  { std::ofstream(options.address) << "precious"; }
  Daemon daemon(options);
  absl::Status st = daemon.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(options.address));
  std::ifstream in(options.address);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(DaemonTest, RefusesASymlinkEvenToAStaleSocket) {
  config::CommonOptions options = Options();
  std::string target = dir_ + "/target.sock";
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, target.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    close(fd);
  }
  ASSERT_EQ(symlink(target.c_str(), options.address.c_str()), 0);
  Daemon daemon(options);
  absl::Status st = daemon.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(std::filesystem::is_symlink(options.address));
}

TEST_F(DaemonTest, ReplacesAStaleSocket) {
  config::CommonOptions options = Options();
  {
    // Bound and closed without unlink: what a crashed daemon leaves behind.
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, options.address.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    close(fd);
  }
  ASSERT_TRUE(S_ISSOCK(ModeOf(options.address)));
  Daemon daemon(options);
  absl::Status st = daemon.Start();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(ModeOf(options.address) & 07777, 0660u);
  EXPECT_TRUE(Serving(options.address));
}

TEST_F(DaemonTest, RefusesAnOverlongSocketPath) {
  config::CommonOptions options = Options();
  options.address = dir_ + "/" + std::string(120, 'x') + ".sock";
  Daemon daemon(options);
  EXPECT_EQ(daemon.Start().code(), absl::StatusCode::kInvalidArgument);
}

size_t AppendToString(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

// GET http://<endpoint>/metrics; empty on failure.
std::string FetchMetrics(const std::string& endpoint) {
  std::string body;
  CURL* curl = curl_easy_init();
  std::string url = "http://" + endpoint + "/metrics";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  EXPECT_EQ(rc, CURLE_OK) << url << ": " << curl_easy_strerror(rc);
  return body;
}

TEST_F(DaemonTest, ExportsRequestMetrics) {
  config::CommonOptions options = Options();
  options.metrics_address = "127.0.0.1:0";
  Daemon daemon(options);
  ASSERT_TRUE(daemon.Start().ok());
  std::string endpoint = daemon.metrics_endpoint();
  ASSERT_THAT(endpoint, StartsWith("127.0.0.1:"));
  EXPECT_NE(endpoint, "127.0.0.1:0");

  ASSERT_TRUE(Serving(options.address));
  {
    grpc::ClientContext context;
    introspection::PluginsRequest request;
    request.add_filters("bogus==1");
    introspection::PluginsResponse response;
    introspection::Introspection::NewStub(Dial(options.address))
        ->Plugins(&context, request, &response);
  }

  std::string body = FetchMetrics(endpoint);
  EXPECT_THAT(body, HasSubstr("berth_grpc_requests_total{"));
  EXPECT_THAT(body, HasSubstr("code=\"OK\",method=\"/grpc.health.v1.Health/Check\"} 1"));
  EXPECT_THAT(body,
              HasSubstr("code=\"InvalidArgument\",method=\"/containerd.services.introspection."
                        "v1.Introspection/Plugins\"} 1"));
  EXPECT_THAT(body, HasSubstr("berth_grpc_request_duration_seconds_bucket{"
                              "method=\"/grpc.health.v1.Health/Check\",le=\"0.0001\"}"));
  EXPECT_THAT(body, HasSubstr("berth_grpc_request_duration_seconds_count{"
                              "method=\"/grpc.health.v1.Health/Check\"} 1"));
}

TEST_F(DaemonTest, RefusesATakenMetricsPort) {
  config::CommonOptions options = Options();
  options.metrics_address = "127.0.0.1:0";
  Daemon first(options);
  ASSERT_TRUE(first.Start().ok());

  config::CommonOptions second_options = Options("second");
  second_options.metrics_address = first.metrics_endpoint();
  Daemon second(second_options);
  absl::Status st = second.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr(first.metrics_endpoint()));
  EXPECT_FALSE(std::filesystem::exists(second_options.address)) << "nothing left bound";
}

TEST_F(DaemonTest, ShutdownMakesWaitReturn) {
  config::CommonOptions options = Options();
  Daemon daemon(options);
  ASSERT_TRUE(daemon.Start().ok());
  auto waited = std::async(std::launch::async, [&daemon] { daemon.Wait(); });
  EXPECT_EQ(waited.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  daemon.Shutdown();
  ASSERT_EQ(waited.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_FALSE(Serving(options.address));
}

TEST_F(DaemonTest, SigtermMakesWaitReturn) {
  config::CommonOptions options = Options();
  Daemon daemon(options);
  ASSERT_TRUE(daemon.Start().ok());
  auto waited = std::async(std::launch::async, [&daemon] { daemon.Wait(); });
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  ASSERT_EQ(waited.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_FALSE(std::filesystem::exists(options.address));
}

// The child half of SocketActivation: run under systemd-socket-activate, serve on fd 3.
// Disabled: not a test of its own, the child DaemonTest.SocketActivation spawns.
TEST(DaemonActivationChild, DISABLED_ServeOnPassedSocket) {
  const char* root = getenv("BERTH_TEST_ACTIVATION_ROOT");
  const char* address = getenv("BERTH_TEST_ACTIVATION_ADDRESS");
  if (root == nullptr || address == nullptr) {
    GTEST_SKIP() << "only run by DaemonTest.SocketActivation";
  }
  config::CommonOptions options;
  options.root = root;
  options.address = address;
  Daemon daemon(options);
  absl::Status st = daemon.Start();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(daemon.grpc_target(), std::string("unix:") + address);
  daemon.Wait();  // until the parent's SIGTERM
}

TEST_F(DaemonTest, SocketActivation) {
  std::string address = dir_ + "/activated.sock";
  std::string root = dir_ + "/activated-root";
  std::string self = std::filesystem::read_symlink("/proc/self/exe");
  std::vector<std::string> args = {"systemd-socket-activate",
                                   "-l",
                                   address,
                                   "-E",
                                   "BERTH_TEST_ACTIVATION_ROOT=" + root,
                                   "-E",
                                   "BERTH_TEST_ACTIVATION_ADDRESS=" + address,
                                   self,
                                   "--gtest_filter=DaemonActivationChild.*",
                                   "--gtest_also_run_disabled_tests"};
  std::vector<char*> argv;
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  // The child must not inherit our blocked SIGTERM.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid;
  int rc = posix_spawnp(&pid, "systemd-socket-activate", nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  ASSERT_EQ(rc, 0) << strerror(rc);

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!std::filesystem::exists(address) && std::chrono::steady_clock::now() < deadline) {
    usleep(10 * 1000);
  }
  // The first connection launches the child, which then serves on the passed socket.
  bool serving = false;
  while (!serving && std::chrono::steady_clock::now() < deadline) {
    serving = Serving(address);
  }
  EXPECT_TRUE(serving);

  kill(pid, SIGTERM);
  int status = 0;
  bool reaped = false;
  while (!reaped && std::chrono::steady_clock::now() < deadline) {
    reaped = waitpid(pid, &status, WNOHANG) == pid;
    if (!reaped) {
      usleep(10 * 1000);
    }
  }
  if (!reaped) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "activated daemon did not stop on SIGTERM";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_F(DaemonTest, WaitWithoutStartReturns) {
  Daemon daemon(Options());
  daemon.Wait();
}

}  // namespace
}  // namespace berth::server
