// Events end to end: Publish (containerd.services.events.v1 unary calls from several client
// threads, each keeping WINDOW calls in flight) -> gRPC Subscribe stream, throughput and
// latency, berth (eventd over NATS JetStream, nats-server with a user/password) vs a containerd
// started here (its in-memory exchange). One run each, same client code, same event count, same
// concurrency; prints both and the ratio. Latency: from just before a Publish call starts to
// the subscriber reading that event. A unary Publish costs a round trip, so THREADS * WINDOW
// calls in flight cap the rate at (THREADS * WINDOW) / round trip, on either side.
//
//   BERTH_BINARY_DIR=$PWD/build BERTH_SOURCE_DIR=$PWD build/integration/events_throughput
//       [N=20000] [THREADS=8] [WINDOW=1]

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "containerd/events/task.pb.h"
#include "containerd/services/events/v1/events.grpc.pb.h"
#include "integration/harness.h"
#include "lib/testing/testing.h"

namespace {

namespace cpb = ::containerd::services::events::v1;
using berth::testing::WaitFor;

struct Result {
  int64_t received = 0;
  double seconds = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

// CPU seconds (user + system) used so far by this process's children named `comm` (the
// daemons it started), from /proc/<pid>/stat.
double ChildCpuSeconds(const std::string& comm) {
  double total = 0;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) {
    return 0;
  }
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
      continue;
    }
    std::ifstream in(absl::StrCat("/proc/", entry->d_name, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) {
      continue;
    }
    std::string name = stat.substr(open + 1, close - open - 1);
    std::istringstream fields(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    fields >> state >> ppid;
    std::string skip;
    for (int i = 0; i < 9; ++i) {
      fields >> skip;  // pgrp .. cmajflt
    }
    double utime = 0, stime = 0;
    fields >> utime >> stime;
    if (ppid == getpid() && name == comm) {
      total += (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  closedir(proc);
  return total;
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

cpb::PublishRequest MakeRequest(const std::string& topic, uint32_t id) {
  cpb::PublishRequest request;
  request.set_topic(topic);
  containerd::events::TaskExit exit;
  exit.set_container_id("bench");
  exit.set_pid(id);
  request.mutable_event()->set_type_url("containerd.events.TaskExit");
  exit.SerializeToString(request.mutable_event()->mutable_value());
  return request;
}

grpc::Status Publish(cpb::Events::Stub& stub, const std::string& topic, uint32_t id) {
  grpc::ClientContext context;
  context.AddMetadata("containerd-namespace", "bench");
  google::protobuf::Empty empty;
  return stub.Publish(&context, MakeRequest(topic, id), &empty);
}

// One publishing thread: events first, first + step, ... below n, `window` calls in flight.
void PublishAll(cpb::Events::Stub& stub, int first, int step, int n, int window,
                std::vector<int64_t>& sent, std::atomic<int64_t>& errors) {
  struct Call {
    grpc::ClientContext context;
    google::protobuf::Empty response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<google::protobuf::Empty>> rpc;
  };
  grpc::CompletionQueue cq;
  int next = first;
  int in_flight = 0;
  auto start_next = [&] {
    auto* call = new Call;
    call->context.AddMetadata("containerd-namespace", "bench");
    cpb::PublishRequest request = MakeRequest("/bench/event", static_cast<uint32_t>(next));
    sent[next] = absl::GetCurrentTimeNanos();
    call->rpc = stub.AsyncPublish(&call->context, request, &cq);
    call->rpc->Finish(&call->response, &call->status, call);
    next += step;
    ++in_flight;
  };
  while (next < n && in_flight < window) {
    start_next();
  }
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    --in_flight;
    if (!ok || !call->status.ok()) {
      errors.fetch_add(1);
    }
    if (next < n) {
      start_next();
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

// `daemons`: the command names of the processes serving this side, for CPU per event.
Result Run(const std::string& name, const std::string& socket, int n, int threads, int window,
           const std::vector<std::string>& daemons) {
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = cpb::Events::NewStub(channel);
  std::vector<int64_t> sent(n, 0), got(n, 0);
  std::atomic<int64_t> received{0};
  std::atomic<bool> ready{false};
  grpc::ClientContext sub_context;
  cpb::SubscribeRequest sub_request;
  sub_request.add_filters("namespace==bench");
  auto reader = stub->Subscribe(&sub_context, sub_request);
  std::thread subscriber([&] {
    cpb::Envelope envelope;
    while (reader->Read(&envelope)) {
      int64_t now = absl::GetCurrentTimeNanos();
      if (envelope.topic() == "/bench/ping") {
        ready.store(true);
        continue;
      }
      containerd::events::TaskExit exit;
      exit.ParseFromString(envelope.event().value());
      if (exit.pid() < static_cast<uint32_t>(n) && got[exit.pid()] == 0) {
        got[exit.pid()] = now;
        received.fetch_add(1);
      }
    }
  });
  if (!WaitFor([&] {
        Publish(*stub, "/bench/ping", 0);
        return ready.load();
      },
      absl::Seconds(20))) {
    std::cerr << name << ": subscriber never became live\n";
    std::exit(1);
  }
  int64_t start = absl::GetCurrentTimeNanos();
  std::vector<double> daemon_cpu(daemons.size());
  for (size_t i = 0; i < daemons.size(); ++i) {
    daemon_cpu[i] = -ChildCpuSeconds(daemons[i]);
  }
  double client_cpu_start = SelfCpuSeconds();
  std::vector<std::thread> publishers;
  std::atomic<int64_t> errors{0};
  for (int t = 0; t < threads; ++t) {
    publishers.emplace_back([&, t] {
      auto own = cpb::Events::NewStub(channel);
      PublishAll(*own, t, threads, n, window, sent, errors);
    });
  }
  for (std::thread& p : publishers) {
    p.join();
  }
  WaitFor([&] { return received.load() == n; }, absl::Seconds(60));
  double client_cpu = SelfCpuSeconds() - client_cpu_start;
  std::string cpu_line;
  for (size_t i = 0; i < daemons.size(); ++i) {
    daemon_cpu[i] += ChildCpuSeconds(daemons[i]);
    absl::StrAppendFormat(&cpu_line, "%s %.1f us, ", daemons[i],
                          daemon_cpu[i] * 1e6 / std::max<int64_t>(received.load(), 1));
  }
  int64_t end = 0;
  std::vector<double> latencies;
  for (int i = 0; i < n; ++i) {
    if (got[i] != 0) {
      end = std::max(end, got[i]);
      latencies.push_back(static_cast<double>(got[i] - sent[i]) / 1e6);
    }
  }
  sub_context.TryCancel();
  subscriber.join();
  reader->Finish();
  Result r;
  r.received = received.load();
  r.seconds = static_cast<double>(end - start) / 1e9;
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    r.p50_ms = latencies[latencies.size() / 2];
    r.p99_ms = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
    r.max_ms = latencies.back();
  }
  std::cout << absl::StrFormat(
      "%-10s %7d events  %6.2f s  %9.0f events/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  "
      "(%d publish errors)\n"
      "%-10s cpu per event: %sclient (publishers + subscriber) %.1f us\n",
      name, r.received, r.seconds, r.received / std::max(r.seconds, 1e-9), r.p50_ms, r.p99_ms,
      r.max_ms, static_cast<int>(errors.load()), "", cpu_line,
      client_cpu * 1e6 / std::max<int64_t>(r.received, 1));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  int threads = argc > 2 ? std::atoi(argv[2]) : 8;
  int window = argc > 3 ? std::atoi(argv[3]) : 1;
  if (n <= 0 || threads <= 0 || window <= 0) {
    std::cerr << "usage: events_throughput [N > 0] [THREADS > 0] [WINDOW > 0]\n";
    return 2;
  }
  berth::testing::TempDir dir;

  berth::testing::NatsServer::Options nats_options;
  nats_options.user = "bench";
  nats_options.password = "bench-password";
  berth::testing::NatsServer nats(nats_options);
  std::string eventd_dir = dir.Join("eventd");
  mkdir(eventd_dir.c_str(), 0700);
  std::string eventd_socket = eventd_dir + "/ev.sock";
  berth::testing::Process eventd(
      {berth::testing::BinaryPath("services/eventd/eventd"), "--root", eventd_dir + "/root",
       "--state", eventd_dir + "/state", "--address", eventd_socket, "--nats-url", nats.url(),
       "--nats-credentials", nats.credentials(), "--log-level", "warn"},
      eventd_dir);
  if (!berth::testing::WaitForUnixSocket(eventd_socket, absl::Seconds(20))) {
    std::cerr << "eventd did not start:\n" << eventd.ReadLog();
    return 1;
  }
  std::string containerd_dir = dir.Join("containerd");
  mkdir(containerd_dir.c_str(), 0700);
  berth::integration::Containerd containerd(containerd_dir, {});
  if (absl::Status st = containerd.Start(); !st.ok()) {
    std::cerr << "containerd: " << st << "\n";
    return 1;
  }
  std::cout << "publish -> gRPC Subscribe, " << n << " events, " << threads
            << " publishing threads x " << window << " calls in flight, one subscriber\n";
  Result berth = Run("berth", eventd_socket, n, threads, window, {"eventd", "nats-server"});
  Result ctrd = Run("containerd", containerd.address(), n, threads, window, {"containerd"});
  double berth_rate = berth.received / std::max(berth.seconds, 1e-9);
  double ctrd_rate = ctrd.received / std::max(ctrd.seconds, 1e-9);
  std::cout << absl::StrFormat(
      "ratio berth/containerd: throughput %.2fx, p99 latency %.2fx (lower is better)\n",
      berth_rate / ctrd_rate, berth.p99_ms / std::max(ctrd.p99_ms, 1e-9));
  containerd.Stop();
  eventd.Terminate();
  return 0;
}
