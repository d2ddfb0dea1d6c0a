// execd's Tasks.Metrics and its /metrics endpoint against the real execd binary, berth-shim and
// runc: the cgroup statistics of running busybox containers (limits set in their specs) read
// through the gRPC service, through `ctr tasks metrics` and through `berth stats`, and the
// task gauges and start histogram scraped over HTTP. Needs root, runc and busybox-static.

#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "containerd/cgroups/stats/v1/metrics.pb.h"
#include "containerd/cgroups/v2/stats/metrics.pb.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/ctr_records.h"
#include "integration/execd_cleanup.h"
#include "integration/harness.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/base/random.h"
#include "lib/cgroups/cgroup_stats.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/testing/testing.h"
#include "services/execd/test_bundle.h"

namespace berth::integration {
namespace {

namespace tasks = ::containerd::services::tasks::v1;
using ::berth::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kNamespace[] = "metrics-test";
constexpr char kSpecType[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
constexpr int64_t kMemoryLimit = 64 << 20;
constexpr int64_t kPidsLimit = 50;
// Three processes: the shell (busy, within a fifth of a CPU) and two sleeps.
const std::vector<std::string> kBusy = {"sh", "-c",
                                        "sleep 600 & sleep 600 & while :; do :; done"};

class ExecdMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "runc needs root (ctest label: root)";
    }
    ASSERT_TRUE(execd::testing::MakeBusyboxRootfs(dir_.Join("busybox")).ok());
    metrics_port_ = berth::testing::FreeTcpPort();
    ASSERT_TRUE(execd_
                    .StartServing("execd",
                                  {berth::testing::BinaryPath("services/execd/execd"), "--root",
                                   dir_.Join("root"), "--state", dir_.Join("state"), "--address",
                                   address_, "--contentd-address", dir_.Join("no-contentd.sock"),
                                   "--metrics-address",
                                   absl::StrCat("127.0.0.1:", metrics_port_)},
                                  address_)
                    .ok())
        << execd_.ReadLog();
    ASSERT_TRUE(berth::testing::WaitForTcpPort(metrics_port_, absl::Seconds(20)));
    std::shared_ptr<grpc::Channel> channel = DialOwnConnection(address_);
    store_ = std::make_unique<containers::GrpcContainerStore>(channel);
    stub_ = tasks::Tasks::NewStub(channel);
  }

  void TearDown() override {
    for (const std::string& id : ids_) {
      RemoveTestTask(stub_.get(), kNamespace, dir_.Join("state"), id);
    }
  }

  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (tasks::Tasks::Stub::*method)(grpc::ClientContext*,
                                                                 const Request&, Response*),
                    const Request& request, Response* response,
                    const std::string& ns = kNamespace) {
    grpc::ClientContext call;
    ApplyContext(Context{ns, ""}.WithTimeout(absl::Seconds(60)), &call);
    return FromGrpcStatus((stub_.get()->*method)(&call, request, response));
  }

  // A running busybox container; with `limits` its spec caps memory, pids and CPU (a fifth).
  // `relative_cgroup`: its cgroupsPath is relative (runc puts it below its own cgroup).
  std::string Run(const std::string& name, const std::vector<std::string>& args, bool limits,
                  bool relative_cgroup = false) {
    std::string id = absl::StrCat("berth-", name, "-", RandomHex(4));
    auto spec = execd::testing::BusyboxSpec(id, dir_.Join("busybox"), args, false,
                                            limits ? kMemoryLimit : 0);
    EXPECT_TRUE(spec.ok()) << spec.status();
    (*spec)["root"]["path"] = "rootfs";
    if (limits) {
      (*spec)["linux"]["resources"]["pids"] = {{"limit", kPidsLimit}};
      (*spec)["linux"]["resources"]["cpu"]["quota"] = 20000;
      (*spec)["linux"]["resources"]["cpu"]["period"] = 100000;
    }
    if (relative_cgroup) {
      (*spec)["linux"]["cgroupsPath"] = id;
    }
    containers::Container c;
    c.id = id;
    c.runtime.name = "io.containerd.runc.v2";
    c.spec = containers::Any{kSpecType, spec->dump()};
    EXPECT_TRUE(store_->Create(Context{kNamespace, ""}, c).ok());
    ids_.push_back(id);
    tasks::CreateTaskRequest create;
    create.set_container_id(id);
    auto* m = create.add_rootfs();
    m->set_type("bind");
    m->set_source(dir_.Join("busybox"));
    m->add_options("rbind");
    m->add_options("rw");
    tasks::CreateTaskResponse created;
    absl::Status st = Call(&tasks::Tasks::Stub::Create, create, &created);
    EXPECT_TRUE(st.ok()) << st << execd_.ReadLog();
    tasks::StartRequest start;
    start.set_container_id(id);
    tasks::StartResponse started;
    st = Call(&tasks::Tasks::Stub::Start, start, &started);
    EXPECT_TRUE(st.ok()) << st;
    return id;
  }

  absl::StatusOr<tasks::MetricsResponse> Metrics(const std::vector<std::string>& filters,
                                                 const std::string& ns = kNamespace) {
    tasks::MetricsRequest request;
    for (const std::string& f : filters) {
      request.add_filters(f);
    }
    tasks::MetricsResponse response;
    absl::Status st = Call(&tasks::Tasks::Stub::Metrics, request, &response, ns);
    if (!st.ok()) return st;
    return response;
  }

  // The cgroup v1 statistics of task `id` (the test expects this host's v1 controllers).
  cgroups::v1::Metrics V1Of(const std::string& id) {
    absl::StatusOr<tasks::MetricsResponse> r = Metrics({"id==" + id});
    EXPECT_TRUE(r.ok()) << r.status();
    cgroups::v1::Metrics m;
    if (r.ok() && r->metrics_size() == 1) {
      EXPECT_EQ(r->metrics(0).data().type_url(), cgroups::kV1MetricsType);
      EXPECT_TRUE(m.ParseFromString(r->metrics(0).data().value()));
    } else {
      ADD_FAILURE() << "want one metric for " << id;
    }
    return m;
  }

  // Polls `cond` for up to 30 s.
  static bool Eventually(const std::function<bool()>& cond) {
    absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!cond()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return true;
  }

  // The berth CLI against this execd, in the test's namespace.
  CommandResult Berth(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {berth::testing::BinaryPath("tools/berth/berth"),
                                     "--execd-address", address_, "-n", kNamespace};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r;
    r.output = berth::testing::RunCommand(argv, &r.exit_code);
    return r;
  }

  bool V1Host() const { return cgroups::DetectMode() != cgroups::Mode::kUnified; }

  TempDir dir_;
  std::string address_ = dir_.Join("execd.sock");
  int metrics_port_ = 0;
  DaemonProcess execd_{dir_.path()};
  std::unique_ptr<containers::GrpcContainerStore> store_;
  std::unique_ptr<tasks::Tasks::Stub> stub_;
  std::vector<std::string> ids_;
};

// Why the v1 tests skip on a host without cgroup v1 controllers (a missing check named).
constexpr char kNoV1Controllers[] =
    "this test reads the v1 Metrics of a real container and this host has no cgroup v1 "
    "controllers; execd's v2 Metrics are checked only on fixture files (cgroup_stats_test), "
    "not against a real v2 container";

TEST_F(ExecdMetricsTest, ReportsEachTasksCgroup) {
  if (!V1Host()) {
    GTEST_SKIP() << kNoV1Controllers;
  }
  std::string busy = Run("busy", kBusy, /*limits=*/true);
  std::string idle = Run("idle", {"sleep", "600"}, /*limits=*/false);

  // pids.current counts the container's processes once both sleeps have started.
  cgroups::v1::Metrics m;
  ASSERT_TRUE(Eventually([&] {
    m = V1Of(busy);
    return m.pids().current() == 3;
  })) << m.DebugString();
  EXPECT_EQ(m.pids().limit(), static_cast<uint64_t>(kPidsLimit));
  EXPECT_GT(m.memory().usage().usage(), 0u);
  EXPECT_EQ(m.memory().usage().limit(), static_cast<uint64_t>(kMemoryLimit));
  EXPECT_EQ(m.memory().hierarchical_memory_limit(), static_cast<uint64_t>(kMemoryLimit));
  EXPECT_GE(m.memory().usage().max(), m.memory().usage().usage());
  EXPECT_GT(m.memory().total_rss() + m.memory().total_cache(), 0u);
  EXPECT_GT(m.cpu().usage().per_cpu_size(), 0);
  // The busy shell's CPU time grows, and its quota throttles it.
  uint64_t cpu = m.cpu().usage().total();
  EXPECT_TRUE(Eventually([&] {
    m = V1Of(busy);
    return m.cpu().usage().total() > cpu && m.cpu().throttling().throttled_periods() > 0;
  })) << m.DebugString();

  cgroups::v1::Metrics other = V1Of(idle);
  EXPECT_EQ(other.pids().current(), 1u);
  EXPECT_EQ(other.pids().limit(), 0u);  // no limit, as containerd reports it on v1
  EXPECT_GT(other.memory().usage().limit(), static_cast<uint64_t>(kMemoryLimit));

  // Every task of the namespace without filters; containerd's filters by id and namespace.
  absl::StatusOr<tasks::MetricsResponse> all = Metrics({});
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> ids;
  for (const auto& metric : all->metrics()) {
    ids.push_back(metric.id());
    EXPECT_GT(metric.timestamp().seconds(), 0);
  }
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(busy, idle));
  absl::StatusOr<tasks::MetricsResponse> one = Metrics({"id==" + idle, "id==nonexistent"});
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->metrics_size(), 1);
  EXPECT_EQ(one->metrics(0).id(), idle);
  EXPECT_EQ(Metrics({absl::StrCat("namespace==", kNamespace)})->metrics_size(), 2);
  EXPECT_EQ(Metrics({"namespace==elsewhere"})->metrics_size(), 0);
  EXPECT_EQ(Metrics({}, "elsewhere")->metrics_size(), 0);
  absl::StatusOr<tasks::MetricsResponse> bad = Metrics({"id=="});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();

  // A stopped task that is not deleted still has its cgroup: reported, with no process.
  tasks::KillRequest kill;
  kill.set_container_id(idle);
  kill.set_signal(SIGKILL);
  google::protobuf::Empty empty;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Kill, kill, &empty).ok());
  tasks::WaitRequest wait;
  wait.set_container_id(idle);
  tasks::WaitResponse waited;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Wait, wait, &waited).ok());
  EXPECT_EQ(V1Of(idle).pids().current(), 0u);
}

// A cgroupsPath that is not absolute leaves the cgroup to runc: found by the task's process.
TEST_F(ExecdMetricsTest, FindsARelativeCgroupByTheTasksProcess) {
  if (!V1Host()) {
    GTEST_SKIP() << kNoV1Controllers;
  }
  std::string id = Run("relative", kBusy, /*limits=*/true, /*relative_cgroup=*/true);
  cgroups::v1::Metrics m;
  ASSERT_TRUE(Eventually([&] {
    m = V1Of(id);
    return m.pids().current() == 3;
  })) << m.DebugString();
  EXPECT_EQ(m.memory().usage().limit(), static_cast<uint64_t>(kMemoryLimit));
  EXPECT_EQ(m.pids().limit(), static_cast<uint64_t>(kPidsLimit));
}

TEST_F(ExecdMetricsTest, CtrPrintsTaskMetrics) {
  if (!V1Host()) {
    GTEST_SKIP() << kNoV1Controllers;
  }
  std::string id = Run("ctr", kBusy, /*limits=*/true);
  ASSERT_TRUE(Eventually([&] { return V1Of(id).pids().current() == 3; }));
  CommandResult r = Ctr(address_, kNamespace, {"tasks", "metrics", id});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, std::string> values;
  for (const std::string& line : Lines(r.output)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() >= 2) values[f[0]] = f[1];
  }
  EXPECT_EQ(values["memory.limit_in_bytes"], std::to_string(kMemoryLimit)) << r.output;
  EXPECT_EQ(values["pids.current"], "3") << r.output;
  EXPECT_EQ(values["pids.limit"], std::to_string(kPidsLimit)) << r.output;
  uint64_t usage = 0, cpu = 0;
  EXPECT_TRUE(absl::SimpleAtoi(values["memory.usage_in_bytes"], &usage) && usage > 0) << r.output;
  EXPECT_TRUE(absl::SimpleAtoi(values["cpuacct.usage"], &cpu) && cpu > 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(id));

  // --format json: ctr decodes the Any into containerd's own Go type and prints it.
  r = Ctr(address_, kNamespace, {"tasks", "metrics", "--format", "json", id});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["memory"]["usage"]["limit"], kMemoryLimit) << r.output;
  EXPECT_EQ(j["pids"]["limit"], kPidsLimit) << r.output;
}

TEST_F(ExecdMetricsTest, BerthStatsPrintsDockersTable) {
  std::string busy = Run("stats", kBusy, /*limits=*/true);
  std::string idle = Run("other", {"sleep", "600"}, /*limits=*/false);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(Berth({"--json", "stats", "--no-stream", busy}).output,
                             "\"pids\": 3");
  }));
  CommandResult r = Berth({"stats", "--no-stream", "--json", busy});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_TRUE(j.is_array() && j.size() == 1) << r.output;
  EXPECT_EQ(j[0]["id"], busy);
  EXPECT_EQ(j[0]["memory_limit"], kMemoryLimit);
  EXPECT_GT(j[0]["memory_usage"].get<uint64_t>(), 0u);
  EXPECT_GT(j[0]["memory_percent"].get<double>(), 0.0);
  EXPECT_GT(j[0]["cpu_percent"].get<double>(), 0.0);  // the busy shell, within its quota
  EXPECT_LT(j[0]["cpu_percent"].get<double>(), 100.0);
  EXPECT_EQ(j[0]["pids"], 3);

  r = Berth({"stats", "--no-stream"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> lines = Lines(r.output);
  ASSERT_EQ(lines.size(), 3u) << r.output;
  EXPECT_THAT(lines[0], ::testing::MatchesRegex(
                            "CONTAINER ID +CPU % +MEM USAGE / LIMIT +MEM % +PIDS"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex(absl::StrCat(
                            busy, " +[0-9.]+% +[0-9.]+[KMG]?i?B / 64MiB +[0-9.]+% +3\n")));
  EXPECT_THAT(r.output, ::testing::ContainsRegex(absl::StrCat(idle, " .* 1\n")));

  r = Berth({"stats", "--no-stream", "nonexistent"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nonexistent"));

  // Without --no-stream it refreshes every second until interrupted.
  berth::testing::Process stream(
      {berth::testing::BinaryPath("tools/berth/berth"), "--execd-address", address_, "-n",
       kNamespace, "stats", busy},
      dir_.path());
  EXPECT_TRUE(Eventually([&] {
    std::string log = stream.ReadLog();
    size_t tables = 0;
    for (size_t at = log.find("CONTAINER ID"); at != std::string::npos;
         at = log.find("CONTAINER ID", at + 1)) {
      ++tables;
    }
    return tables >= 2;
  })) << stream.ReadLog();
  EXPECT_TRUE(stream.running());
  stream.Signal(SIGINT);
  stream.Wait();
}

TEST_F(ExecdMetricsTest, EndpointCountsTasksByStateShimsAndStartLatency) {
  auto scrape = [&] {
    long code = 0;
    std::string body = HttpGet(metrics_port_, "/metrics", &code);
    EXPECT_EQ(code, 200) << body;
    return body;
  };
  std::string before = scrape();
  EXPECT_THAT(before, HasSubstr("berth_shims_alive 0"));
  EXPECT_THAT(before, HasSubstr("berth_task_start_seconds_count 0"));

  std::string a = Run("gauge-a", {"sleep", "600"}, false);
  std::string b = Run("gauge-b", {"sleep", "600"}, false);
  tasks::PauseTaskRequest pause;
  pause.set_container_id(b);
  google::protobuf::Empty empty;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Pause, pause, &empty).ok());
  std::string during = scrape();
  EXPECT_THAT(during, HasSubstr("berth_tasks{state=\"running\"} 1"));
  EXPECT_THAT(during, HasSubstr("berth_tasks{state=\"paused\"} 1"));
  EXPECT_THAT(during, HasSubstr("berth_shims_alive 2"));
  EXPECT_THAT(during, HasSubstr("berth_task_start_seconds_count 2"));
  EXPECT_THAT(during, HasSubstr("berth_task_start_seconds_bucket{le=\"+Inf\"} 2"));
  EXPECT_THAT(during, HasSubstr("berth_containers_records 2"));

  tasks::KillRequest kill;
  kill.set_container_id(a);
  kill.set_signal(SIGKILL);
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Kill, kill, &empty).ok());
  tasks::WaitRequest wait;
  wait.set_container_id(a);
  tasks::WaitResponse waited;
  ASSERT_TRUE(Call(&tasks::Tasks::Stub::Wait, wait, &waited).ok());
  std::string after = scrape();
  EXPECT_THAT(after, HasSubstr("berth_tasks{state=\"stopped\"} 1"));
  EXPECT_THAT(after, HasSubstr("berth_tasks{state=\"running\"} 0"));
}

}  // namespace
}  // namespace berth::integration
