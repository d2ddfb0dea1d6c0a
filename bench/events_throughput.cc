// Events end to end, publish -> a subscriber, throughput and latency, in one run: berth's
// sides (eventd over NATS JetStream, nats-server with a user/password) and a containerd started
// here (unary Publish into its in-memory exchange -> gRPC Subscribe). Sides (SIDES, all by
// default): bus (the JetStream stream alone, written and read in this process through eventd's
// own JetStreamLog: the ceiling under every berth side), native (NatsPublisher, as berth's
// daemons publish), stream (berth.events.v1 streaming Publish, one event per request), client
// (the same through events::EventdPublisher, which batches), unary (containerd's Publish
// to eventd), containerd. Same event count, payload and publishing threads for each; prints
// each side and its ratio to containerd. Latency: from just before an event is published to
// the subscriber reading it. A unary Publish costs a round trip, so THREADS * WINDOW calls in
// flight cap the rate at (THREADS * WINDOW) / round trip, on either side.
//
//   BERTH_BINARY_DIR=$PWD/build BERTH_SOURCE_DIR=$PWD build/integration/events_throughput
//       [N=20000] [THREADS=8] [WINDOW=1] [RATE=0]

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "berth/events/v1/events.grpc.pb.h"
#include "containerd/events/task.pb.h"
#include "containerd/services/events/v1/events.grpc.pb.h"
#include "integration/harness.h"
#include "lib/events/eventd_publisher.h"
#include "lib/events/nats_publisher.h"
#include "lib/testing/testing.h"
#include "services/eventd/event_log.h"

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

// Paces a publishing thread to `rate` events/s for the thread's share (0: as fast as it can):
// waits until event k's slot on a fixed schedule from `start`.
void Pace(int64_t start_nanos, double rate_per_thread, int k) {
  if (rate_per_thread <= 0) {
    return;
  }
  int64_t due = start_nanos + static_cast<int64_t>(k * 1e9 / rate_per_thread);
  int64_t now = absl::GetCurrentTimeNanos();
  if (due > now) {
    absl::SleepFor(absl::Nanoseconds(due - now));
  }
}

// One publishing thread: events first, first + step, ... below n, `window` calls in flight.
void PublishAll(cpb::Events::Stub& stub, int first, int step, int n, int window,
                double rate_per_thread, std::vector<int64_t>& sent,
                std::atomic<int64_t>& errors) {
  struct Call {
    grpc::ClientContext context;
    google::protobuf::Empty response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<google::protobuf::Empty>> rpc;
  };
  grpc::CompletionQueue cq;
  int next = first;
  int in_flight = 0;
  const int64_t start = absl::GetCurrentTimeNanos();
  auto start_next = [&] {
    Pace(start, rate_per_thread, (next - first) / step);
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

std::shared_ptr<grpc::Channel> Channel(const std::string& socket) {
  return grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
}

// One publishing thread's share: events first, first + step, ... below n; records each
// event's start time in sent[id] and counts failures in errors.
using PublishBody = std::function<void(int first, int step, int n, std::vector<int64_t>& sent,
                                       std::atomic<int64_t>& errors)>;

// Where a side's events are read: calls on_event(pid) with each bench event's TaskExit pid, on
// a thread of its own, from Start (which returns once it is live) until Stop.
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void Start(std::function<void(uint32_t)> on_event) = 0;
  virtual void Stop() = 0;
};

// A gRPC Subscribe stream (containerd's Events service) on `socket`, filtered to the bench
// namespace; live once a ping published there comes back.
class GrpcSubscriber : public Subscriber {
 public:
  explicit GrpcSubscriber(const std::string& socket)
      : stub_(cpb::Events::NewStub(Channel(socket))) {}

  void Start(std::function<void(uint32_t)> on_event) override {
    cpb::SubscribeRequest request;
    request.add_filters("namespace==bench");
    reader_ = stub_->Subscribe(&context_, request);
    thread_ = std::thread([this, on_event = std::move(on_event)] {
      cpb::Envelope envelope;
      while (reader_->Read(&envelope)) {
        if (envelope.topic() == "/bench/ping") {
          ready_.store(true);
          continue;
        }
        containerd::events::TaskExit exit;
        exit.ParseFromString(envelope.event().value());
        on_event(exit.pid());
      }
    });
    if (!WaitFor([&] {
          Publish(*stub_, "/bench/ping", 0);
          return ready_.load();
        },
        absl::Seconds(20))) {
      std::cerr << "subscriber never became live\n";
      std::exit(1);
    }
  }

  void Stop() override {
    context_.TryCancel();
    thread_.join();
    reader_->Finish();
  }

 private:
  std::unique_ptr<cpb::Events::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<cpb::Envelope>> reader_;
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

// The stream read directly, as eventd reads it (an ordered consumer through JetStreamLog).
class BusSubscriber : public Subscriber {
 public:
  explicit BusSubscriber(berth::eventd::JetStreamLog& log) : log_(log) {}

  void Start(std::function<void(uint32_t)> on_event) override {
    absl::StatusOr<std::unique_ptr<berth::eventd::EventSubscription>> sub =
        log_.Subscribe(berth::eventd::StartPosition::Live());
    if (!sub.ok()) {
      std::cerr << "bus subscriber: " << sub.status() << "\n";
      std::exit(1);
    }
    thread_ = std::thread([this, sub = *std::move(sub), on_event = std::move(on_event)] {
      while (!stop_.load()) {
        absl::StatusOr<std::optional<berth::eventd::StoredEvent>> next =
            sub->Next(absl::Milliseconds(100));
        if (!next.ok()) {
          std::cerr << "bus subscriber: " << next.status() << "\n";
          return;
        }
        if (next->has_value()) {
          containerd::events::TaskExit exit;
          exit.ParseFromString((*next)->envelope.event().value());
          on_event(exit.pid());
        }
      }
    });
  }

  void Stop() override {
    stop_.store(true);
    thread_.join();
  }

 private:
  berth::eventd::JetStreamLog& log_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// `daemons`: the command names of the processes serving this side, for CPU per event.
// `subscriber` reads the events; `body` publishes them.
Result Run(const std::string& name, Subscriber& subscriber, int n, int threads,
           const PublishBody& body, const std::vector<std::string>& daemons) {
  std::vector<int64_t> sent(n, 0), got(n, 0);
  std::atomic<int64_t> received{0};
  subscriber.Start([&](uint32_t pid) {
    int64_t now = absl::GetCurrentTimeNanos();
    if (pid < static_cast<uint32_t>(n) && got[pid] == 0) {
      got[pid] = now;
      received.fetch_add(1);
    }
  });
  int64_t start = absl::GetCurrentTimeNanos();
  std::vector<double> daemon_cpu(daemons.size());
  for (size_t i = 0; i < daemons.size(); ++i) {
    daemon_cpu[i] = -ChildCpuSeconds(daemons[i]);
  }
  double client_cpu_start = SelfCpuSeconds();
  std::vector<std::thread> publishers;
  std::atomic<int64_t> errors{0};
  for (int t = 0; t < threads; ++t) {
    publishers.emplace_back([&, t] { body(t, threads, n, sent, errors); });
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
  subscriber.Stop();
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
      "%-45s %7d events  %6.2f s  %9.0f events/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  "
      "(%d publish errors)\n"
      "%-45s cpu per event: %sclient (publishers + subscriber) %.1f us\n",
      name, r.received, r.seconds, r.received / std::max(r.seconds, 1e-9), r.p50_ms, r.p99_ms,
      r.max_ms, static_cast<int>(errors.load()), "", cpu_line,
      client_cpu * 1e6 / std::max<int64_t>(r.received, 1));
  return r;
}

// Publishes the way berth's daemons do: NatsPublisher::Publish (the event committed to a sqlite
// outbox, group-committed with the other threads' events, then sent to JetStream by the
// publisher's sender thread) -> the stream -> eventd -> the gRPC subscriber.
// commit_nanos[id]: how long Publish took (the outbox commit, fsync included); sized by the
// caller.
PublishBody NativeBody(berth::events::NatsPublisher& publisher, double rate_per_thread,
                       std::vector<int64_t>& commit_nanos) {
  return [&publisher, rate_per_thread, &commit_nanos](int first, int step, int n,
                                                      std::vector<int64_t>& sent,
                                                      std::atomic<int64_t>& errors) {
    const int64_t start = absl::GetCurrentTimeNanos();
    for (int id = first, k = 0; id < n; id += step, ++k) {
      Pace(start, rate_per_thread, k);
      containerd::events::TaskExit exit;
      exit.set_container_id("bench");
      exit.set_pid(static_cast<uint32_t>(id));
      sent[id] = absl::GetCurrentTimeNanos();
      if (!publisher.Publish("bench", "/bench/event", exit).ok()) {
        errors.fetch_add(1);
      }
      commit_nanos[id] = absl::GetCurrentTimeNanos() - sent[id];
    }
  };
}

// berth.events.v1 Publish: one client stream per thread, one event per request (the per-event
// cost a client that does not batch pays), acknowledgements read on a thread of their own, at
// most STREAM_WINDOW (environment, 1024) events unacknowledged per thread (no round trip per
// event: that is the point of the stream, so the unary WINDOW does not apply). Flat out, the
// window is what queues: latency ~ THREADS x STREAM_WINDOW / rate.
uint64_t StreamWindow() {
  static const uint64_t window = [] {
    const char* env = std::getenv("STREAM_WINDOW");
    long long v = env != nullptr ? std::atoll(env) : 0;
    return v > 0 ? static_cast<uint64_t>(v) : uint64_t{1024};
  }();
  return window;
}

PublishBody StreamBody(const std::shared_ptr<grpc::Channel>& channel, double rate_per_thread) {
  return [channel, rate_per_thread](int first, int step, int n, std::vector<int64_t>& sent,
                                    std::atomic<int64_t>& errors) {
    auto stub = berth::events::v1::Events::NewStub(channel);
    grpc::ClientContext context;
    context.AddMetadata("containerd-namespace", "bench");
    auto stream = stub->Publish(&context);
    absl::Mutex mu;
    uint64_t acked = 0;   // guarded by mu
    bool ended = false;   // guarded by mu: the call is over
    std::thread acks([&] {
      berth::events::v1::PublishAck ack;
      while (stream->Read(&ack)) {
        absl::MutexLock lock(&mu);
        acked = ack.through();
      }
      absl::MutexLock lock(&mu);
      ended = true;
    });
    const int64_t start = absl::GetCurrentTimeNanos();
    uint64_t written = 0;
    for (int id = first, k = 0; id < n; id += step, ++k) {
      Pace(start, rate_per_thread, k);
      {
        absl::MutexLock lock(&mu);
        auto room = [&] { return ended || written - acked < StreamWindow(); };
        mu.Await(absl::Condition(&room));
        if (ended) {
          break;
        }
      }
      berth::events::v1::PublishRequest request;
      *request.add_events() = MakeRequest("/bench/event", static_cast<uint32_t>(id));
      sent[id] = absl::GetCurrentTimeNanos();
      if (!stream->Write(request)) {
        break;
      }
      ++written;
    }
    stream->WritesDone();
    acks.join();
    grpc::Status status = stream->Finish();
    if (!status.ok() || acked != written) {
      std::cerr << "streaming publish: " << status.error_message() << ", " << acked << " of "
                << written << " acknowledged\n";
      errors.fetch_add(1);
    }
  };
}

// The bus alone: JetStreamLog::AppendAsync, eventd's own way into the stream, from this process,
// at most StreamWindow() appends unsettled per thread (as the streaming Publish), read by a
// BusSubscriber. What JetStream costs with no gRPC and no eventd in the path: a ceiling for every
// berth side, since each goes through it.
// ack_nanos[id]: from the append to the stream's acknowledgement; sized by the caller.
PublishBody BusBody(berth::eventd::JetStreamLog& log, double rate_per_thread,
                    std::vector<int64_t>& ack_nanos) {
  return [&log, rate_per_thread, &ack_nanos](int first, int step, int n,
                                             std::vector<int64_t>& sent,
                                             std::atomic<int64_t>& errors) {
    struct Window {
      absl::Mutex mu;
      uint64_t settled = 0;  // guarded by mu
    };
    auto window = std::make_shared<Window>();  // callbacks may outlive a failed loop
    const int64_t start = absl::GetCurrentTimeNanos();
    uint64_t appended = 0;
    for (int id = first, k = 0; id < n; id += step, ++k) {
      Pace(start, rate_per_thread, k);
      {
        absl::MutexLock lock(&window->mu);
        auto room = [&] { return appended - window->settled < StreamWindow(); };
        window->mu.Await(absl::Condition(&room));
      }
      cpb::PublishRequest request = MakeRequest("/bench/event", static_cast<uint32_t>(id));
      berth::eventd::Envelope envelope;
      *envelope.mutable_timestamp() = google::protobuf::util::TimeUtil::GetCurrentTime();
      envelope.set_namespace_("bench");
      envelope.set_topic(request.topic());
      *envelope.mutable_event() = std::move(*request.mutable_event());
      sent[id] = absl::GetCurrentTimeNanos();
      ++appended;
      log.AppendAsync(envelope, [window, &errors, &ack_nanos, &sent, id](absl::Status st) {
        ack_nanos[id] = absl::GetCurrentTimeNanos() - sent[id];
        if (!st.ok()) {
          errors.fetch_add(1);
        }
        absl::MutexLock lock(&window->mu);
        ++window->settled;
      });
    }
    absl::MutexLock lock(&window->mu);
    auto all = [&] { return window->settled == appended; };
    window->mu.Await(absl::Condition(&all));
  };
}

// events::EventdPublisher (the streaming Publish's client: events queued while a request is
// written go out together in the next one), one per thread, at most STREAM_WINDOW events
// unacknowledged per thread.
PublishBody ClientBody(const std::shared_ptr<grpc::Channel>& channel, double rate_per_thread) {
  return [channel, rate_per_thread](int first, int step, int n, std::vector<int64_t>& sent,
                                    std::atomic<int64_t>& errors) {
    berth::events::EventdPublisherOptions options;
    options.ns = "bench";
    berth::events::EventdPublisher publisher(channel, options);
    const int64_t start = absl::GetCurrentTimeNanos();
    uint64_t last = 0;
    for (int id = first, k = 0; id < n; id += step, ++k) {
      Pace(start, rate_per_thread, k);
      if (last >= StreamWindow()) {
        publisher.WaitForAcknowledged(last - StreamWindow() + 1, absl::Seconds(60));
      }
      containerd::events::TaskExit exit;
      exit.set_container_id("bench");
      exit.set_pid(static_cast<uint32_t>(id));
      sent[id] = absl::GetCurrentTimeNanos();
      absl::StatusOr<uint64_t> number = publisher.Queue("/bench/event", exit);
      if (!number.ok()) {
        errors.fetch_add(1);
        continue;
      }
      last = *number;
    }
    if (!publisher.WaitForAcknowledged(last, absl::Seconds(60))) {
      std::cerr << "eventd publisher: " << publisher.status() << ", " << publisher.acknowledged()
                << " of " << last << " acknowledged\n";
      errors.fetch_add(1);
    }
  };
}

PublishBody UnaryBody(const std::shared_ptr<grpc::Channel>& channel, int window,
                      double rate_per_thread) {
  return [channel, window, rate_per_thread](int first, int step, int n,
                                            std::vector<int64_t>& sent,
                                            std::atomic<int64_t>& errors) {
    auto own = cpb::Events::NewStub(channel);
    PublishAll(*own, first, step, n, window, rate_per_thread, sent, errors);
  };
}

// One line: p50 and p99 of `nanos` (one entry per event), under the side's line.
void PrintPercentiles(const std::string& what, std::vector<int64_t> nanos) {
  std::sort(nanos.begin(), nanos.end());
  size_t n = nanos.size();
  std::cout << absl::StrFormat("%-45s %s: p50 %7.3f ms  p99 %7.3f ms\n", "", what,
                               nanos[n / 2] / 1e6, nanos[std::min(n - 1, n * 99 / 100)] / 1e6);
}

double Rate(const Result& r) { return r.received / std::max(r.seconds, 1e-9); }

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  int threads = argc > 2 ? std::atoi(argv[2]) : 8;
  int window = argc > 3 ? std::atoi(argv[3]) : 1;
  double rate = argc > 4 ? std::atof(argv[4]) : 0;  // offered events/s in all; 0: flat out
  if (n <= 0 || threads <= 0 || window <= 0 || rate < 0) {
    std::cerr << "usage: events_throughput [N > 0] [THREADS > 0] [WINDOW > 0] [RATE >= 0]\n";
    return 2;
  }
  const double rate_per_thread = rate / threads;
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
  berth::events::NatsPublisherOptions publisher_options;
  publisher_options.outbox_path = dir.Join("bench-outbox.db");
  publisher_options.url = nats.url();
  publisher_options.credentials = nats.credentials();
  publisher_options.client_name = "bench-publisher";
  absl::StatusOr<std::unique_ptr<berth::events::NatsPublisher>> publisher =
      berth::events::NatsPublisher::Open(publisher_options);
  if (!publisher.ok()) {
    std::cerr << "publisher: " << publisher.status() << "\n";
    return 1;
  }

  std::cout << "publish -> gRPC Subscribe, " << n << " events, " << threads
            << " publishing threads (unary calls: x " << window << " in flight), one subscriber, "
            << (rate > 0 ? absl::StrCat("offered ", rate, " events/s") : "as fast as they go")
            << "\n";
  auto eventd_channel = Channel(eventd_socket);
  auto containerd_channel = Channel(containerd.address());
  // SIDES (environment): a comma-separated subset of bus,native,stream,client,unary,containerd;
  // all by default. The ratios need containerd.
  const char* sides_env = std::getenv("SIDES");
  std::string sides = sides_env != nullptr && *sides_env != '\0'
                          ? absl::StrCat(",", sides_env, ",")
                          : ",bus,native,stream,client,unary,containerd,";
  auto wanted = [&](const char* side) { return absl::StrContains(sides, absl::StrCat(",", side, ",")); };
  std::vector<std::pair<std::string, Result>> berth_results;
  if (wanted("bus")) {
    berth::eventd::JetStreamLogOptions bus_options;
    bus_options.url = nats.url();
    bus_options.credentials = nats.credentials();
    bus_options.client_name = "bench-bus";
    absl::StatusOr<std::unique_ptr<berth::eventd::JetStreamLog>> bus =
        berth::eventd::JetStreamLog::Open(bus_options);
    if (!bus.ok()) {
      std::cerr << "bus: " << bus.status() << "\n";
      return 1;
    }
    BusSubscriber sub(**bus);
    std::vector<int64_t> ack_nanos(n, 0);
    berth_results.emplace_back(
        "bus alone", Run("berth's bus alone (JetStream, no eventd/gRPC)", sub, n, threads,
                         BusBody(**bus, rate_per_thread, ack_nanos), {"nats-server"}));
    PrintPercentiles("of which append -> stream ack", ack_nanos);
  }
  // A side served by eventd, read by a gRPC subscriber of its own.
  auto run_eventd_side = [&](const std::string& key, const std::string& title,
                             const PublishBody& body) {
    GrpcSubscriber eventd_sub(eventd_socket);
    berth_results.emplace_back(key, Run(title, eventd_sub, n, threads, body,
                                        {"eventd", "nats-server"}));
  };
  if (wanted("native")) {
    std::vector<int64_t> commit_nanos(n, 0);
    run_eventd_side("daemon publisher", "berth (daemon publisher -> NATS -> eventd)",
                    NativeBody(**publisher, rate_per_thread, commit_nanos));
    PrintPercentiles("of which Publish (outbox commit, fsync)", commit_nanos);
  }
  if (wanted("stream")) {
    run_eventd_side("streaming Publish", "berth (berth.events.v1 streaming Publish)",
                    StreamBody(eventd_channel, rate_per_thread));
  }
  if (wanted("client")) {
    run_eventd_side("EventdPublisher", "berth (EventdPublisher, streaming, batching)",
                    ClientBody(eventd_channel, rate_per_thread));
  }
  if (wanted("unary")) {
    run_eventd_side("unary Publish", "berth (unary Publish to eventd)",
                    UnaryBody(eventd_channel, window, rate_per_thread));
  }
  if (wanted("containerd")) {
    GrpcSubscriber containerd_sub(containerd.address());
    Result ctrd = Run("containerd (unary Publish)", containerd_sub, n, threads,
                      UnaryBody(containerd_channel, window, rate_per_thread), {"containerd"});
    for (const auto& [what, r] : berth_results) {
      std::cout << absl::StrFormat(
          "ratio berth/containerd, %-18s throughput %.2fx, p99 latency %.2fx (lower is better)\n",
          what + ":", Rate(r) / Rate(ctrd), r.p99_ms / std::max(ctrd.p99_ms, 1e-9));
    }
  }
  publisher->reset();
  containerd.Stop();
  eventd.Terminate();
  return 0;
}
