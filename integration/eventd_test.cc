// eventd end to end (issue 4): a real nats-server with JetStream and a user/password, eventd,
// contentd, the berth CLI, ctr and containerd's own `containerd publish`.

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "berth/events/v1/events.grpc.pb.h"
#include "containerd/events/content.pb.h"
#include "containerd/events/task.pb.h"
#include "containerd/services/events/v1/events.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "integration/harness.h"
#include "lib/events/eventd_client.h"
#include "lib/events/eventd_publisher.h"
#include "lib/events/nats_publisher.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::BinaryPath;
using ::berth::testing::NatsServer;
using ::berth::testing::Process;
using ::berth::testing::TempDir;
using ::berth::testing::WaitFor;
namespace cpb = ::containerd::services::events::v1;
namespace bpb = ::berth::events::v1;

constexpr char kUser[] = "berth";
constexpr char kPassword[] = "s3cret";

NatsServer::Options AuthNats() {
  NatsServer::Options o;
  o.user = kUser;
  o.password = kPassword;
  return o;
}

// An eventd under `dir` (root, state, socket ev.sock), started by the test, stopped by PID.
class Eventd {
 public:
  // `extra` flags go after the common ones (e.g. --nats-tls-ca FILE).
  Eventd(std::string dir, std::string nats_url, std::string credentials,
         std::vector<std::string> extra = {})
      : dir_(std::move(dir)), nats_url_(std::move(nats_url)),
        credentials_(std::move(credentials)), extra_(std::move(extra)) {
    mkdir(dir_.c_str(), 0700);
  }

  absl::Status Start() {
    std::vector<std::string> argv = {BinaryPath("services/eventd/eventd"),
                                     "--root", dir_ + "/root",
                                     "--state", dir_ + "/state",
                                     "--address", address(),
                                     "--nats-url", nats_url_,
                                     "--log-level", "debug",
                                     "--nats-connect-timeout", "5"};
    if (!credentials_.empty()) {
      argv.insert(argv.end(), {"--nats-credentials", credentials_});
    }
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    process_ = std::make_unique<Process>(argv, dir_);
    bool up = WaitFor(
        [&] {
          return !process_->running() || process_->TryReap() ||
                 testing::WaitForUnixSocket(address(), absl::ZeroDuration());
        },
        absl::Seconds(20));
    if (!up || !process_->running()) {
      return absl::UnavailableError(absl::StrCat("eventd did not start:\n", ReadLog()));
    }
    return absl::OkStatus();
  }
  void Kill() {
    if (process_ != nullptr) {
      logs_ += process_->ReadLog();
      process_->Kill();
      process_.reset();
    }
  }
  // The exit status of a daemon that stopped by itself (waits up to 20 s).
  int WaitExit() {
    int status = -1;
    process_->WaitFor(absl::Seconds(20), &status);
    return status;
  }
  std::string address() const { return dir_ + "/ev.sock"; }
  std::string ReadLog() const { return logs_ + (process_ ? process_->ReadLog() : ""); }

 private:
  std::string dir_, nats_url_, credentials_;
  std::vector<std::string> extra_;
  std::unique_ptr<Process> process_;
  std::string logs_;
};

std::shared_ptr<grpc::Channel> Dial(const std::string& path) {
  return grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
}

// Waits until `process`'s log contains `needle`.
bool LogContains(const Process& process, const std::string& needle,
                 absl::Duration timeout = absl::Seconds(20)) {
  return WaitFor([&] { return absl::StrContains(process.ReadLog(), needle); }, timeout);
}

// A berth events subscriber running in the background, output to its log.
std::unique_ptr<Process> BerthEvents(const std::string& log_dir, const std::string& address,
                                     std::vector<std::string> args) {
  std::vector<std::string> argv = {BinaryPath("tools/berth/berth"), "--eventd-address", address,
                                   "events"};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<Process>(argv, log_dir);
}

constexpr char kSentinelTopic[] = "/test/sentinel";

// Filters that also let the sentinel through (filters are ORed; none lets everything through).
events::EventdSubscribeOptions WithSentinel(events::EventdSubscribeOptions options) {
  if (!options.filters.empty()) {
    options.filters.push_back(absl::StrCat("topic==\"", kSentinelTopic, "\""));
  }
  return options;
}

// Polls a berth.events.v1 subscription until its marker arrives, i.e. until it is live. Its
// filters also pass the sentinel (UpToSentinel).
class Collector {
 public:
  Collector(const std::string& address, events::EventdSubscribeOptions options)
      : subscriber_(Dial(address), WithSentinel(std::move(options))) {
    thread_ = std::thread([this] {
      absl::Status st = subscriber_.Run([this](uint64_t seq, const cpb::Envelope& envelope) {
        absl::MutexLock lock(&mu_);
        sequences_.push_back(seq);
        envelopes_.push_back(envelope);
        return true;
      });
      absl::MutexLock lock(&mu_);
      done_ = true;
      status_ = st;
    });
  }
  ~Collector() {
    subscriber_.Cancel();
    thread_.join();
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return envelopes_.size();
  }
  bool WaitSize(size_t n, absl::Duration timeout) {
    return WaitFor([&] { return size() >= n; }, timeout);
  }
  std::vector<cpb::Envelope> envelopes() {
    absl::MutexLock lock(&mu_);
    return envelopes_;
  }
  std::vector<uint64_t> sequences() {
    absl::MutexLock lock(&mu_);
    return sequences_;
  }
  bool live() { return subscriber_.last_sequence().has_value(); }
  // How Run ended ("running" while it runs), for failure messages.
  std::string state() {
    absl::MutexLock lock(&mu_);
    return done_ ? status_.ToString() : "running";
  }
  events::EventdSubscriber& subscriber() { return subscriber_; }

  // Publishes a sentinel event through `stub` and waits (up to `timeout`) until it arrives:
  // the stream is in order, so everything stored before it has arrived too. Returns what
  // arrived before it, sentinels left out, or nullopt when it did not come. Stands in for
  // "wait and see that nothing more arrives".
  std::optional<std::vector<cpb::Envelope>> UpToSentinel(
      cpb::Events::Stub& stub, absl::Duration timeout = absl::Seconds(30));

 private:
  events::EventdSubscriber subscriber_;
  absl::Mutex mu_;
  std::vector<uint64_t> sequences_ ABSL_GUARDED_BY(mu_);
  std::vector<cpb::Envelope> envelopes_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// "<messages> messages, sequences <first>..<last>" of eventd's stream, asked of nats-server
// directly (not through eventd), to tell a loss in the stream from a loss in a reader.
std::string StreamState(const NatsServer& nats, const char* user = kUser,
                        const char* password = kPassword) {
  natsOptions* opts = nullptr;
  natsConnection* conn = nullptr;
  jsCtx* js = nullptr;
  jsStreamInfo* info = nullptr;
  std::string out = "stream state unknown";
  if (natsOptions_Create(&opts) == NATS_OK &&
      natsOptions_SetURL(opts, nats.url().c_str()) == NATS_OK &&
      natsOptions_SetUserInfo(opts, user, password) == NATS_OK &&
      natsConnection_Connect(&conn, opts) == NATS_OK &&
      natsConnection_JetStream(&js, conn, nullptr) == NATS_OK &&
      js_GetStreamInfo(&info, js, "BERTH_EVENTS", nullptr, nullptr) == NATS_OK) {
    out = absl::StrCat("stream BERTH_EVENTS: ", info->State.Msgs, " messages, sequences ",
                       info->State.FirstSeq, "..", info->State.LastSeq);
    jsStreamInfo_Destroy(info);
  }
  if (js != nullptr) jsCtx_Destroy(js);
  if (conn != nullptr) natsConnection_Destroy(conn);
  if (opts != nullptr) natsOptions_Destroy(opts);
  return out;
}

int PidOf(const cpb::Envelope& envelope) {
  containerd::events::TaskExit exit;
  EXPECT_TRUE(exit.ParseFromString(envelope.event().value()));
  return static_cast<int>(exit.pid());
}

containerd::events::TaskExit Exit(int i) {
  containerd::events::TaskExit exit;
  exit.set_container_id(absl::StrCat("c", i));
  exit.set_pid(static_cast<uint32_t>(i));
  return exit;
}

grpc::Status Publish(cpb::Events::Stub& stub, const std::string& ns, const std::string& topic,
                     const google::protobuf::Message& event) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!ns.empty()) {
    context.AddMetadata("containerd-namespace", ns);
  }
  cpb::PublishRequest request;
  request.set_topic(topic);
  request.mutable_event()->set_type_url(events::TypeUrlFor(event));
  event.SerializeToString(request.mutable_event()->mutable_value());
  google::protobuf::Empty empty;
  return stub.Publish(&context, request, &empty);
}

std::optional<std::vector<cpb::Envelope>> Collector::UpToSentinel(cpb::Events::Stub& stub,
                                                                  absl::Duration timeout) {
  static std::atomic<int> next_sentinel{1000000};
  int id = next_sentinel.fetch_add(1);
  grpc::Status status = Publish(stub, "default", kSentinelTopic, Exit(id));
  if (!status.ok()) {
    ADD_FAILURE() << "publishing the sentinel: " << status.error_message();
    return std::nullopt;
  }
  auto arrived = [&] {
    for (const cpb::Envelope& e : envelopes()) {
      if (e.topic() == kSentinelTopic && PidOf(e) == id) {
        return true;
      }
    }
    return false;
  };
  if (!WaitFor(arrived, timeout)) {
    return std::nullopt;
  }
  std::vector<cpb::Envelope> before;
  for (const cpb::Envelope& e : envelopes()) {
    if (e.topic() == kSentinelTopic) {
      if (PidOf(e) == id) {
        break;
      }
      continue;
    }
    before.push_back(e);
  }
  return before;
}

TEST(EventdTest, ContentDeleteFromContentdReachesBerthEvents) {
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  Contentd::Options co;
  co.nats_url = nats.url();
  co.extra_args = {"--nats-credentials", nats.credentials()};
  mkdir(dir.Join("contentd").c_str(), 0700);
  Contentd contentd(dir.Join("contentd"), co);
  ASSERT_TRUE(contentd.Start().ok()) << contentd.ReadLog();

  // A live subscriber: it is subscribed once it prints the pings we keep publishing.
  std::unique_ptr<Process> live = BerthEvents(
      dir.path(), eventd.address(), {"topic~=\"^/(content/delete|test/ping)$\""});
  auto events_stub = cpb::Events::NewStub(Dial(eventd.address()));
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_TRUE(Publish(*events_stub, "default", "/test/ping", Exit(0)).ok());
        return absl::StrContains(live->ReadLog(), "/test/ping");
      },
      absl::Seconds(20)))
      << live->ReadLog();

  auto stub = containerd::services::content::v1::Content::NewStub(Dial(contentd.address()));
  absl::StatusOr<std::string> digest = CommitBlob(*stub, "default", "ref-1", "hello eventd");
  ASSERT_TRUE(digest.ok()) << digest.status();
  ASSERT_TRUE(DeleteBlob(*stub, "default", *digest).ok());
  EXPECT_TRUE(LogContains(*live, *digest)) << live->ReadLog();
  EXPECT_TRUE(absl::StrContains(live->ReadLog(), "default /content/delete")) << live->ReadLog();

  // And a replaying one, --json, exits after the first match.
  std::unique_ptr<Process> replay = BerthEvents(
      dir.path(), eventd.address(),
      {"--json", "--since", "1", "--count", "1", "topic==\"/content/delete\""});
  int status = -1;
  ASSERT_TRUE(replay->WaitFor(absl::Seconds(30), &status)) << replay->ReadLog();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << replay->ReadLog();
  std::string out = replay->ReadLog();
  EXPECT_TRUE(absl::StrContains(out, "\"topic\":\"/content/delete\"")) << out;
  EXPECT_TRUE(absl::StrContains(out, absl::StrCat("\"digest\":\"", *digest, "\""))) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"namespace\":\"default\"")) << out;
}


// 10,000 events from a publisher (contentd's NatsPublisher, with its outbox) while nats-server is
// restarted twice, once stopped (SIGTERM) and once SIGKILLed: a replay from the start gets each
// exactly once, in order.
TEST(EventdTest, TenThousandEventsAcrossNatsStopAndSigkillReplayInOrder) {
  constexpr int kEvents = 10000;
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();

  events::NatsPublisherOptions po;
  po.outbox_path = dir.Join("outbox.db");
  po.url = nats.url();
  po.credentials = nats.credentials();
  po.reconnect_wait_min = absl::Milliseconds(20);
  po.reconnect_wait_max = absl::Milliseconds(200);
  po.flush_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(po);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  std::atomic<int> published{0};
  std::thread producer([&] {
    for (int i = 0; i < kEvents; ++i) {
      ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(i)).ok());
      published.store(i + 1);
      if (i % 100 == 0) {
        absl::SleepFor(absl::Milliseconds(5));  // spread over the restarts
      }
    }
  });
  for (int restart = 1; restart <= 2; ++restart) {
    ASSERT_TRUE(WaitFor([&] { return published.load() >= restart * kEvents / 3; },
                        absl::Seconds(60)));
    if (restart == 1) {
      nats.Stop();
    } else {
      nats.Kill();  // no JetStream shutdown, no goodbye to the clients
    }
    absl::SleepFor(absl::Milliseconds(300));  // an outage, not a blink
    nats.Start();
  }
  producer.join();
  ASSERT_TRUE((*publisher)->WaitForDelivery(absl::Seconds(60)))
      << (*publisher)->pending() << " still pending";

  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  so.filters = {"topic==\"/tasks/exit\""};
  Collector replay(eventd.address(), so);
  ASSERT_TRUE(replay.WaitSize(kEvents, absl::Seconds(60)))
      << replay.size() << " replayed; " << StreamState(nats) << "; publisher delivered "
      << (*publisher)->delivered() << "\n"
      << eventd.ReadLog();
  auto stub = cpb::Events::NewStub(Dial(eventd.address()));
  std::optional<std::vector<cpb::Envelope>> settled = replay.UpToSentinel(*stub);
  ASSERT_TRUE(settled.has_value()) << eventd.ReadLog();
  std::vector<cpb::Envelope> got = *settled;
  ASSERT_EQ(got.size(), static_cast<size_t>(kEvents));
  std::vector<uint64_t> seqs = replay.sequences();
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(PidOf(got[i]), i) << "at " << i;
    if (i > 0) {
      ASSERT_GT(seqs[i], seqs[i - 1]);
    }
  }
}

// containerd's own clients against eventd: `ctr events` receives, `containerd publish` (the
// shims' publisher binary) publishes through Publish to a berth subscriber.
TEST(EventdTest, CtrEventsAndContainerdPublish) {
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  auto stub = cpb::Events::NewStub(Dial(eventd.address()));

  Process ctr({"ctr", "--address", eventd.address(), "events"}, dir.path());
  events::EventdSubscribeOptions so;
  so.filters = {"namespace==ns1"};
  Collector berth_sub(eventd.address(), so);
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_TRUE(Publish(*stub, "default", "/test/ping", Exit(0)).ok());
        return absl::StrContains(ctr.ReadLog(), "/test/ping") && berth_sub.live();
      },
      absl::Seconds(20)))
      << ctr.ReadLog();

  containerd::events::ContentDelete del;
  del.set_digest("sha256:0123456789abcdef");
  google::protobuf::Any any;
  any.set_type_url("containerd.events.ContentDelete");
  del.SerializeToString(any.mutable_value());
  std::string any_path = dir.Join("any.bin");
  {
    std::ofstream f(any_path, std::ios::binary);
    f << any.SerializeAsString();
  }
  int code = -1;
  std::string out = testing::RunCommand(
      absl::StrCat("containerd --address ", eventd.address(),
                   " publish --namespace ns1 --topic /content/delete < ", any_path),
      &code);
  ASSERT_EQ(code, 0) << out;

  ASSERT_TRUE(berth_sub.WaitSize(1, absl::Seconds(20)));
  cpb::Envelope got = berth_sub.envelopes()[0];
  EXPECT_EQ(got.namespace_(), "ns1");
  EXPECT_EQ(got.topic(), "/content/delete");
  EXPECT_EQ(got.event().type_url(), "containerd.events.ContentDelete");
  containerd::events::ContentDelete back;
  ASSERT_TRUE(back.ParseFromString(got.event().value()));
  EXPECT_EQ(back.digest(), "sha256:0123456789abcdef");
  // ctr decodes it too (it only resolves containerd's bare type names).
  EXPECT_TRUE(LogContains(ctr, "ns1 /content/delete {\"digest\":\"sha256:0123456789abcdef\"}"))
      << ctr.ReadLog();

  // ctr's filters go through eventd's containerd filter matching.
  Process filtered({"ctr", "--address", eventd.address(), "events",
                    "topic~=\"^/content/\",namespace==ns2"},
                   dir.path());
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_TRUE(Publish(*stub, "ns2", "/content/delete", del).ok());
        return absl::StrContains(filtered.ReadLog(), "ns2 /content/delete");
      },
      absl::Seconds(20)))
      << filtered.ReadLog();
  // Two events the filter must drop, then one it passes: once that one is printed, ctr has
  // been handed everything before it, in stream order.
  ASSERT_TRUE(Publish(*stub, "ns2", "/test/ping", Exit(1)).ok());
  ASSERT_TRUE(Publish(*stub, "ns3", "/content/delete", del).ok());
  containerd::events::ContentDelete last;
  last.set_digest("sha256:fedcba9876543210");
  ASSERT_TRUE(Publish(*stub, "ns2", "/content/delete", last).ok());
  ASSERT_TRUE(LogContains(filtered, "sha256:fedcba9876543210")) << filtered.ReadLog();
  std::string log = filtered.ReadLog();
  EXPECT_FALSE(absl::StrContains(log, "/test/ping")) << log;
  EXPECT_FALSE(absl::StrContains(log, "ns3")) << log;

  // event.<field> filters, as containerd adapts them.
  events::EventdSubscribeOptions by_field;
  by_field.start_sequence = 1;
  by_field.filters = {"event.digest==\"sha256:0123456789abcdef\",namespace==ns1"};
  Collector field_sub(eventd.address(), by_field);
  std::optional<std::vector<cpb::Envelope>> matched = field_sub.UpToSentinel(*stub);
  ASSERT_TRUE(matched.has_value()) << field_sub.state();
  ASSERT_EQ(matched->size(), 1u);
  EXPECT_EQ((*matched)[0].namespace_(), "ns1");
}

TEST(EventdTest, BadInputIsInvalidArgument) {
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  auto stub = cpb::Events::NewStub(Dial(eventd.address()));
  for (const char* topic : {"", "/", "tasks/exit", "/tasks//exit", "/tasks/exit/", "/ta sks",
                            "/-x"}) {
    EXPECT_EQ(Publish(*stub, "default", topic, Exit(0)).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << topic;
  }
  for (const char* ns : {"bad ns", "-x", "a..b", "ns/x"}) {
    EXPECT_EQ(Publish(*stub, ns, "/tasks/exit", Exit(0)).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << ns;
  }
  {
    grpc::ClientContext context;
    cpb::ForwardRequest request;
    request.mutable_envelope()->set_namespace_("default");
    request.mutable_envelope()->set_topic("/tasks/exit");  // no timestamp
    google::protobuf::Empty empty;
    EXPECT_EQ(stub->Forward(&context, request, &empty).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;
    cpb::ForwardRequest request;
    request.mutable_envelope()->set_namespace_("Bad NS");
    request.mutable_envelope()->set_topic("/tasks/exit");
    request.mutable_envelope()->mutable_timestamp()->set_seconds(1);
    google::protobuf::Empty empty;
    EXPECT_EQ(stub->Forward(&context, request, &empty).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  for (const char* filter : {"topic==\"", "topic~=(", "==x", "topic==a,,"}) {
    grpc::ClientContext context;
    cpb::SubscribeRequest request;
    request.add_filters(filter);
    auto reader = stub->Subscribe(&context, request);
    cpb::Envelope envelope;
    EXPECT_FALSE(reader->Read(&envelope));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << filter;

    grpc::ClientContext context2;
    bpb::SubscribeRequest request2;
    request2.add_filters(filter);
    request2.set_start_sequence(1);
    auto berth_stub = bpb::Events::NewStub(Dial(eventd.address()));
    auto reader2 = berth_stub->Subscribe(&context2, request2);
    bpb::StreamedEvent item;
    EXPECT_FALSE(reader2->Read(&item));
    EXPECT_EQ(reader2->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << filter;
  }
  int code = -1;
  std::string out = testing::RunCommand(
      {BinaryPath("tools/berth/berth"), "--eventd-address", eventd.address(), "events",
       "topic~=("},
      &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_TRUE(absl::StrContains(out, "berth: ")) << out;
  out = testing::RunCommand({BinaryPath("tools/berth/berth"), "--eventd-address",
                             eventd.address(), "events", "--since", "yesterday"},
                            &code);
  EXPECT_EQ(code, 2) << out;
}

// The bus refuses clients without the right credentials, and they say so.
TEST(EventdTest, WrongNatsCredentialsAreRefusedAndSaidSo) {
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd bad(dir.Join("bad"), nats.url(), absl::StrCat(kUser, ":wrong"));
  EXPECT_FALSE(bad.Start().ok());
  EXPECT_NE(bad.WaitExit(), 0);
  EXPECT_TRUE(absl::StrContains(bad.ReadLog(), "refused the credentials of user \"berth\""))
      << bad.ReadLog();
  Eventd none(dir.Join("none"), nats.url(), "");
  EXPECT_FALSE(none.Start().ok());
  EXPECT_TRUE(absl::StrContains(none.ReadLog(), "refused a connection without credentials"))
      << none.ReadLog();

  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  events::NatsPublisherOptions po;
  po.outbox_path = dir.Join("outbox.db");
  po.url = nats.url();
  po.credentials = absl::StrCat(kUser, ":wrong");
  po.reconnect_wait_min = absl::Milliseconds(20);
  po.reconnect_wait_max = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(po);
  ASSERT_TRUE(publisher.ok());
  ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(1)).ok());
  EXPECT_TRUE(WaitFor([&] { return (*publisher)->credentials_refused(); }, absl::Seconds(10)));
  EXPECT_EQ((*publisher)->pending(), 1);  // kept, not lost

  // A raw client without credentials cannot even connect, so cannot publish.
  natsConnection* nc = nullptr;
  EXPECT_NE(natsConnection_ConnectTo(&nc, nats.url().c_str()), NATS_OK);
  if (nc != nullptr) {
    natsConnection_Destroy(nc);
  }
  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  Collector all(eventd.address(), so);
  auto stub = cpb::Events::NewStub(Dial(eventd.address()));
  std::optional<std::vector<cpb::Envelope>> stored = all.UpToSentinel(*stub);
  ASSERT_TRUE(stored.has_value()) << all.state();
  EXPECT_TRUE(stored->empty()) << stored->size() << " events stored by refused clients";
}

// TLS on the bus: nats-server requires it and verifies client certificates; eventd and a daemon's
// publisher verify the server against the test CA (and its name) and show their own.
class NatsTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = testing::MakeTestPki(dir_.path());
    NatsServer::Options o = AuthNats();
    o.tls_cert = pki_.server_cert;
    o.tls_key = pki_.server_key;
    o.tls_verify_clients_ca = pki_.ca;
    nats_ = std::make_unique<NatsServer>(o);
  }
  // eventd's TLS flags: the test CA, the client certificate, and `server_name`.
  std::vector<std::string> TlsFlags(const std::string& ca, const std::string& server_name) {
    std::vector<std::string> flags = {"--nats-tls-ca", ca, "--nats-tls-cert", pki_.client_cert,
                                      "--nats-tls-key", pki_.client_key};
    if (!server_name.empty()) {
      flags.insert(flags.end(), {"--nats-tls-server-name", server_name});
    }
    return flags;
  }
  // eventd started with `flags` fails and says `why`.
  void ExpectEventdRefused(const std::string& name, std::vector<std::string> flags,
                           const std::string& why) {
    Eventd eventd(dir_.Join(name), nats_->url(), nats_->credentials(), std::move(flags));
    EXPECT_FALSE(eventd.Start().ok()) << name;
    EXPECT_NE(eventd.WaitExit(), 0) << name;
    EXPECT_TRUE(absl::StrContains(eventd.ReadLog(), why)) << name << ":\n" << eventd.ReadLog();
  }

  TempDir dir_;
  testing::TestPki pki_;
  std::unique_ptr<NatsServer> nats_;
};

TEST_F(NatsTlsTest, VerifiedTlsCarriesEventsFromPublisherToSubscriber) {
  Eventd eventd(dir_.Join("eventd"), nats_->url(), nats_->credentials(),
                TlsFlags(pki_.ca, "localhost"));
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  Collector all(eventd.address(), so);
  ASSERT_TRUE(WaitFor([&] { return all.live(); }, absl::Seconds(10))) << all.state();

  events::NatsPublisherOptions po;
  po.outbox_path = dir_.Join("outbox.db");
  // By name this time: the certificate's name is checked against the URL's host.
  po.url = absl::StrCat("tls://localhost:", nats_->port());
  po.credentials = nats_->credentials();
  po.tls = {pki_.ca, pki_.client_cert, pki_.client_key, ""};
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(po);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(i)).ok());
  }
  EXPECT_TRUE((*publisher)->WaitForDelivery(absl::Seconds(20))) << (*publisher)->pending();
  ASSERT_TRUE(all.WaitSize(3, absl::Seconds(20))) << all.size() << " " << all.state();
  std::vector<cpb::Envelope> got = all.envelopes();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(PidOf(got[i]), i + 1);
    EXPECT_EQ(got[i].topic(), "/tasks/exit");
  }
  // A client that speaks plain NATS gets nowhere.
  natsConnection* nc = nullptr;
  EXPECT_NE(natsConnection_ConnectTo(&nc, absl::StrCat("nats://127.0.0.1:", nats_->port()).c_str()),
            NATS_OK);
  if (nc != nullptr) {
    natsConnection_Destroy(nc);
  }
}

TEST_F(NatsTlsTest, UntrustedOrMisnamedServerOrMissingFilesAreRefusedAndSaidSo) {
  ExpectEventdRefused("other-ca", TlsFlags(pki_.other_ca, ""), "check nats_tls_ca");
  ExpectEventdRefused("wrong-name", TlsFlags(pki_.ca, "nats.example.org"),
                      "check nats_tls_server_name");
  ExpectEventdRefused("no-client-cert", {"--nats-tls-ca", pki_.ca},
                      "it may want a client certificate");
  ExpectEventdRefused("missing-ca", TlsFlags(dir_.Join("nope.pem"), ""),
                      "nats_tls_ca " + dir_.Join("nope.pem") + ": cannot be read");
  ExpectEventdRefused("cert-without-key", {"--nats-tls-cert", pki_.client_cert},
                      "nats_tls_cert and nats_tls_key go together");

  // A daemon's publisher with an untrusted CA keeps its events in the outbox.
  events::NatsPublisherOptions po;
  po.outbox_path = dir_.Join("outbox.db");
  po.url = nats_->url();
  po.credentials = nats_->credentials();
  po.tls = {pki_.other_ca, pki_.client_cert, pki_.client_key, ""};
  po.reconnect_wait_min = absl::Milliseconds(20);
  po.reconnect_wait_max = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(po);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(1)).ok());
  // Not a quiet half second: the publisher has tried and failed the handshake, and says why.
  ASSERT_TRUE(WaitFor([&] { return absl::IsFailedPrecondition((*publisher)->last_failure()); },
                      absl::Seconds(10)))
      << (*publisher)->last_failure();
  EXPECT_TRUE(absl::StrContains((*publisher)->last_failure().message(), "nats_tls_ca"))
      << (*publisher)->last_failure();
  EXPECT_FALSE((*publisher)->connected());
  EXPECT_EQ((*publisher)->pending(), 1);
  EXPECT_EQ((*publisher)->delivered(), 0);

  po.outbox_path = dir_.Join("outbox2.db");
  po.tls.ca_file = dir_.Join("nope.pem");
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> bad = events::NatsPublisher::Open(po);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
}

// deploy/config/nats-server.conf as shipped (its users, passwords and permissions; only the
// listener and the store moved here): eventd and a daemon do their parts, and the daemon's
// user can neither read the bus nor delete the history.
TEST(EventdTest, ShippedNatsConfigLetsEachUserDoOnlyItsPart) {
  TempDir dir;
  std::ifstream in(testing::SourcePath("deploy/config/nats-server.conf"));
  std::string shipped((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(absl::StrContains(shipped, "store_dir: /var/lib/berth/nats"));
  std::string conf;
  for (absl::string_view line : absl::StrSplit(shipped, '\n')) {
    if (!absl::StartsWith(line, "listen:")) {
      absl::StrAppend(&conf, absl::StrReplaceAll(line, {{"/var/lib/berth/nats", dir.Join("js")}}),
                      "\n");
    }
  }
  std::ofstream(dir.Join("nats.conf")) << conf;
  NatsServer::Options o;
  o.jetstream = false;  // the file's own block
  o.config_file = dir.Join("nats.conf");
  NatsServer nats(o);

  Eventd eventd(dir.Join("eventd"), nats.url(), "berth-eventd:CHANGE-ME-eventd");
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  Collector all(eventd.address(), so);
  ASSERT_TRUE(WaitFor([&] { return all.live(); }, absl::Seconds(10))) << all.state();

  // The daemon's user, connected by hand, subscribes to every event and asks to delete the
  // stream: the server delivers nothing and refuses the request.
  natsOptions* opts = nullptr;
  natsConnection* snoop = nullptr;
  natsSubscription* sub = nullptr;
  ASSERT_EQ(natsOptions_Create(&opts), NATS_OK);
  natsOptions_SetURL(opts, nats.url().c_str());
  natsOptions_SetUserInfo(opts, "berth-daemon", "CHANGE-ME-daemon");
  ASSERT_EQ(natsConnection_Connect(&snoop, opts), NATS_OK);
  natsOptions_Destroy(opts);
  ASSERT_EQ(natsConnection_SubscribeSync(&sub, snoop, "berth.events.>"), NATS_OK);
  natsMsg* reply = nullptr;
  EXPECT_NE(natsConnection_RequestString(&reply, snoop, "$JS.API.STREAM.DELETE.BERTH_EVENTS", "",
                                         1000),
            NATS_OK);
  if (reply != nullptr) {
    natsMsg_Destroy(reply);
  }

  events::NatsPublisherOptions po;
  po.outbox_path = dir.Join("outbox.db");
  po.url = nats.url();
  po.credentials = "berth-daemon:CHANGE-ME-daemon";
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(po);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(1)).ok());
  ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(2)).ok());
  EXPECT_TRUE((*publisher)->WaitForDelivery(absl::Seconds(20))) << (*publisher)->pending();
  ASSERT_TRUE(all.WaitSize(2, absl::Seconds(20))) << all.size() << " " << all.state();
  EXPECT_EQ(PidOf(all.envelopes()[0]), 1);
  EXPECT_EQ(PidOf(all.envelopes()[1]), 2);

  natsMsg* seen = nullptr;
  EXPECT_NE(natsSubscription_NextMsg(&seen, sub, 500), NATS_OK) << "the daemon user read an event";
  if (seen != nullptr) {
    natsMsg_Destroy(seen);
  }
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(snoop);
  EXPECT_EQ(StreamState(nats, "berth-eventd", "CHANGE-ME-eventd"),
            "stream BERTH_EVENTS: 2 messages, sequences 1..2");
}

// grpc.health.v1 Check for the whole server ("").
grpc::health::v1::HealthCheckResponse::ServingStatus HealthOf(const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(Dial(address));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  return status.ok() ? response.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
}

// eventd's /metrics: its appends by outcome and how long they took, the subscriptions it
// serves and the events read for them, beside every daemon's gRPC request counts; and its
// Health and berth_eventd_nats_connected following the bus.
TEST(EventdTest, MetricsAndHealthFollowAppendsSubscriptionsAndTheBus) {
  TempDir dir;
  NatsServer nats(AuthNats());
  // Port 0, and the port eventd bound read from its log: no port picked before use.
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials(),
                {"--metrics-address", "127.0.0.1:0"});
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  int port = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string kSaid = "metrics on http://127.0.0.1:";
        std::string log = eventd.ReadLog();
        size_t at = log.find(kSaid);
        if (at == std::string::npos) {
          return false;
        }
        std::string rest = log.substr(at + kSaid.size());
        return absl::SimpleAtoi(rest.substr(0, rest.find('/')), &port) && port > 0;
      },
      absl::Seconds(10)))
      << eventd.ReadLog();
  auto metrics = [&] {
    long code = 0;
    std::string body = HttpGet(port, "/metrics", &code);
    EXPECT_EQ(code, 200) << body;
    return body;
  };
  std::string before = metrics();
  EXPECT_EQ(MetricValue(before, "berth_eventd_appends_total", {"result=\"ok\""}), 0) << before;
  EXPECT_EQ(MetricValue(before, "berth_eventd_subscriptions"), 0) << before;

  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  {
    Collector all(eventd.address(), so);
    ASSERT_TRUE(WaitFor([&] { return all.live(); }, absl::Seconds(10))) << all.state();
    auto stub = cpb::Events::NewStub(Dial(eventd.address()));
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE(Publish(*stub, "m", "/tasks/exit", Exit(i)).ok());
    }
    EXPECT_EQ(Publish(*stub, "m", "bad topic", Exit(4)).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);  // refused before the log: not an append
    ASSERT_TRUE(all.WaitSize(3, absl::Seconds(10))) << all.state();
    std::string text = metrics();
    EXPECT_EQ(MetricValue(text, "berth_eventd_appends_total", {"result=\"ok\""}), 3) << text;
    EXPECT_EQ(MetricValue(text, "berth_eventd_appends_total", {"result=\"error\""}), 0) << text;
    EXPECT_EQ(MetricValue(text, "berth_eventd_append_duration_seconds_count"), 3) << text;
    EXPECT_EQ(MetricValue(text, "berth_eventd_subscriptions"), 1) << text;
    EXPECT_EQ(MetricValue(text, "berth_eventd_subscription_events_total"), 3) << text;
    EXPECT_EQ(MetricValue(text, "berth_grpc_requests_total",
                          {"/containerd.services.events.v1.Events/Publish\"", "code=\"OK\""}),
              3)
        << text;

    EXPECT_EQ(MetricValue(text, "berth_eventd_nats_connected"), 1) << text;
    EXPECT_EQ(HealthOf(eventd.address()), grpc::health::v1::HealthCheckResponse::SERVING);

    // The bus down: the append fails, and is counted so; Health and the gauge say why.
    nats.Stop();
    EXPECT_EQ(Publish(*stub, "m", "/tasks/exit", Exit(5)).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    text = metrics();
    EXPECT_EQ(MetricValue(text, "berth_eventd_appends_total", {"result=\"error\""}), 1) << text;
    EXPECT_TRUE(WaitFor(
        [&] {
          return HealthOf(eventd.address()) ==
                 grpc::health::v1::HealthCheckResponse::NOT_SERVING;
        },
        absl::Seconds(10)));
    EXPECT_EQ(MetricValue(metrics(), "berth_eventd_nats_connected"), 0);
    nats.Start();
    EXPECT_TRUE(WaitFor(
        [&] {
          return HealthOf(eventd.address()) == grpc::health::v1::HealthCheckResponse::SERVING;
        },
        absl::Seconds(20)))
        << eventd.ReadLog();
    EXPECT_EQ(MetricValue(metrics(), "berth_eventd_nats_connected"), 1);
  }
  // The subscriber gone, its subscription closes.
  EXPECT_TRUE(WaitFor([&] { return MetricValue(metrics(), "berth_eventd_subscriptions") == 0; },
                      absl::Seconds(10)))
      << metrics();
}

// eventd killed and restarted under a subscriber: the client resumes after its last sequence,
// and gets what was published while eventd was down (daemons publish to NATS directly).
TEST(EventdTest, EventdRestartMidSubscriptionResumesWithoutLoss) {
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  auto stub = cpb::Events::NewStub(Dial(eventd.address()));

  events::EventdSubscribeOptions so;  // live: the marker tells it where it stands
  Collector sub(eventd.address(), so);
  ASSERT_TRUE(WaitFor([&] { return sub.live(); }, absl::Seconds(10)));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(Publish(*stub, "default", "/tasks/exit", Exit(i)).ok());
  }
  ASSERT_TRUE(sub.WaitSize(50, absl::Seconds(20)));
  eventd.Kill();

  events::NatsPublisherOptions po;
  po.outbox_path = dir.Join("outbox.db");
  po.url = nats.url();
  po.credentials = nats.credentials();
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(po);
  ASSERT_TRUE(publisher.ok());
  for (int i = 100; i < 200; ++i) {
    ASSERT_TRUE((*publisher)->Publish("default", "/tasks/exit", Exit(i)).ok());
  }
  ASSERT_TRUE((*publisher)->WaitForDelivery(absl::Seconds(20)));

  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  for (int i = 200; i < 300; ++i) {
    ASSERT_TRUE(Publish(*stub, "default", "/tasks/exit", Exit(i)).ok());
  }
  ASSERT_TRUE(sub.WaitSize(300, absl::Seconds(30))) << sub.size();
  std::optional<std::vector<cpb::Envelope>> settled = sub.UpToSentinel(*stub);
  ASSERT_TRUE(settled.has_value()) << sub.state();
  std::vector<cpb::Envelope> got = *settled;
  ASSERT_EQ(got.size(), 300u);
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(PidOf(got[i]), i) << "at " << i;
  }
  EXPECT_GE(sub.subscriber().reconnects(), 1);
}

// berth.events.v1 from a time: events stored at or after it.
TEST(EventdTest, SubscribeFromTime) {
  TempDir dir;
  NatsServer nats(AuthNats());
  Eventd eventd(dir.Join("eventd"), nats.url(), nats.credentials());
  ASSERT_TRUE(eventd.Start().ok()) << eventd.ReadLog();
  auto stub = cpb::Events::NewStub(Dial(eventd.address()));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Publish(*stub, "default", "/tasks/exit", Exit(i)).ok());
  }
  absl::SleepFor(absl::Milliseconds(50));
  absl::Time middle = absl::Now();
  absl::SleepFor(absl::Milliseconds(50));
  for (int i = 5; i < 10; ++i) {
    ASSERT_TRUE(Publish(*stub, "default", "/tasks/exit", Exit(i)).ok());
  }
  events::EventdSubscribeOptions so;
  so.start_time = middle;
  Collector sub(eventd.address(), so);
  ASSERT_TRUE(sub.WaitSize(5, absl::Seconds(20)))
      << sub.size() << " received; subscriber " << sub.state() << "\n" << eventd.ReadLog();
  std::optional<std::vector<cpb::Envelope>> settled = sub.UpToSentinel(*stub);
  ASSERT_TRUE(settled.has_value()) << sub.state();
  std::vector<cpb::Envelope> got = *settled;
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(PidOf(got[0]), 5);
  EXPECT_EQ(PidOf(got[4]), 9);
}

// The request for `count` TaskExit events with pids first, first + 1, ...
bpb::PublishRequest StreamRequest(int first, int count, const std::string& topic) {
  bpb::PublishRequest request;
  for (int i = first; i < first + count; ++i) {
    cpb::PublishRequest* event = request.add_events();
    event->set_topic(topic);
    event->mutable_event()->set_type_url(events::TypeUrlFor(Exit(i)));
    Exit(i).SerializeToString(event->mutable_event()->mutable_value());
  }
  return request;
}

// berth.events.v1 Publish against an eventd of its own.
class StreamingPublishTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(eventd_.Start().ok()) << eventd_.ReadLog();
    stub_ = bpb::Events::NewStub(Dial(eventd_.address()));
  }

  TempDir dir_;
  NatsServer nats_{AuthNats()};
  Eventd eventd_{dir_.Join("eventd"), nats_.url(), nats_.credentials()};
  std::unique_ptr<bpb::Events::Stub> stub_;
};

// Requests of one and of many events on one call; the acks only grow and the last covers every
// event; the events land in the history once each, in order, in the call's namespace.
TEST_F(StreamingPublishTest, StoresEveryEventInOrderAndAcksThem) {
  grpc::ClientContext context;
  context.AddMetadata("containerd-namespace", "streamed");
  auto stream = stub_->Publish(&context);
  constexpr int kEvents = 5000;
  std::thread writer([&] {
    int next = 0;
    for (int k = 0; next < kEvents; ++k) {
      int count = std::min(kEvents - next, k % 3 == 0 ? 1 : 97);
      if (!stream->Write(StreamRequest(next, count, "/tasks/exit"))) {
        break;
      }
      next += count;
    }
    stream->WritesDone();
  });
  std::vector<uint64_t> acks;
  bpb::PublishAck ack;
  while (stream->Read(&ack)) {
    acks.push_back(ack.through());
  }
  writer.join();
  grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << eventd_.ReadLog();
  ASSERT_FALSE(acks.empty());
  EXPECT_TRUE(std::is_sorted(acks.begin(), acks.end()));
  EXPECT_EQ(acks.back(), static_cast<uint64_t>(kEvents));

  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  Collector sub(eventd_.address(), so);
  ASSERT_TRUE(sub.WaitSize(kEvents, absl::Seconds(30)))
      << sub.size() << " received; subscriber " << sub.state() << "; " << StreamState(nats_);
  std::vector<cpb::Envelope> got = sub.envelopes();
  ASSERT_EQ(got.size(), static_cast<size_t>(kEvents)) << StreamState(nats_);
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(PidOf(got[i]), i) << "out of order at " << i;
    EXPECT_EQ(got[i].namespace_(), "streamed");
    EXPECT_EQ(got[i].topic(), "/tasks/exit");
    EXPECT_TRUE(got[i].has_timestamp());
  }
}

// One call of the streaming Publish: `requests` in order, then half-close; the last ack and
// the call's status.
std::pair<uint64_t, grpc::Status> PublishCall(bpb::Events::Stub& stub,
                                              const std::vector<bpb::PublishRequest>& requests) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub.Publish(&context);
  for (const bpb::PublishRequest& request : requests) {
    if (!stream->Write(request)) {
      break;
    }
  }
  stream->WritesDone();
  uint64_t through = 0;
  bpb::PublishAck ack;
  while (stream->Read(&ack)) {
    through = ack.through();
  }
  return {through, stream->Finish()};
}

// An invalid event ends the call with InvalidArgument after acknowledging the events before
// it; nothing after it is stored.
TEST_F(StreamingPublishTest, EndsAtAnInvalidEvent) {
  bpb::PublishRequest request = StreamRequest(0, 3, "/tasks/exit");
  request.MergeFrom(StreamRequest(3, 1, "tasks/exit"));  // no leading slash
  request.MergeFrom(StreamRequest(4, 2, "/tasks/exit"));
  auto [through, status] = PublishCall(*stub_, {request});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "event 4")) << status.error_message();
  EXPECT_EQ(through, 3u);
  EXPECT_TRUE(absl::StrContains(StreamState(nats_), "3 messages")) << StreamState(nats_);
}

// A producer that resends events the stream already has (a retry after an error whose ack it
// never saw) stores each once; a call without a producer stores the copies again.
TEST_F(StreamingPublishTest, ProducerNumberingMakesResendsIdempotent) {
  bpb::PublishRequest first = StreamRequest(1, 5, "/tasks/exit");  // pids 1..5
  first.set_producer("tester-1");
  auto [through, status] = PublishCall(*stub_, {first});
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(through, 5u);

  bpb::PublishRequest resend = StreamRequest(3, 3, "/tasks/exit");  // pids 3..5 again
  resend.set_producer("tester-1");
  resend.set_first_sequence(3);
  std::tie(through, status) =
      PublishCall(*stub_, {resend, StreamRequest(6, 2, "/tasks/exit")});  // then 6, 7
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(through, 5u);  // acknowledged: stored, whether now or before

  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  Collector sub(eventd_.address(), so);
  ASSERT_TRUE(sub.WaitSize(7, absl::Seconds(20))) << sub.state() << " " << StreamState(nats_);
  auto events_stub = cpb::Events::NewStub(Dial(eventd_.address()));
  std::optional<std::vector<cpb::Envelope>> settled = sub.UpToSentinel(*events_stub);
  ASSERT_TRUE(settled.has_value()) << sub.state();
  std::vector<cpb::Envelope> got = *settled;
  ASSERT_EQ(got.size(), 7u) << StreamState(nats_);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(PidOf(got[i]), i + 1);
  }

  // Without a producer, the same resend is stored again.
  std::tie(through, status) = PublishCall(*stub_, {StreamRequest(6, 2, "/tasks/exit")});
  ASSERT_TRUE(status.ok()) << status.error_message();
  // 7, the sentinel, and the two copies.
  EXPECT_TRUE(absl::StrContains(StreamState(nats_), "10 messages")) << StreamState(nats_);

  // Bad producers: a name out of the alphabet, numbering without a name, a name set late.
  bpb::PublishRequest bad = StreamRequest(8, 1, "/tasks/exit");
  bad.set_producer("no spaces");
  std::tie(through, status) = PublishCall(*stub_, {bad});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "producer \"no spaces\""))
      << status.error_message();
  bad.clear_producer();
  bad.set_first_sequence(8);
  std::tie(through, status) = PublishCall(*stub_, {bad});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  bpb::PublishRequest late = StreamRequest(8, 1, "/tasks/exit");
  late.set_producer("tester-1");
  std::tie(through, status) = PublishCall(*stub_, {StreamRequest(8, 1, "/tasks/exit"), late});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(through, 1u);  // the first request's event went in before the bad one
  EXPECT_TRUE(absl::StrContains(StreamState(nats_), "11 messages")) << StreamState(nats_);
}

// events::EventdPublisher, the client of the streaming Publish: eventd SIGKILLed twice while
// events flow; the publisher resends what was not acknowledged, as the same producer, and the
// history holds every event once, in order.
TEST_F(StreamingPublishTest, EventdPublisherSurvivesEventdKillsStoringEachEventOnce) {
  events::EventdPublisherOptions po;
  po.ns = "resent";
  po.max_reconnect_wait = absl::Milliseconds(200);
  events::EventdPublisher publisher(Dial(eventd_.address()), po);
  constexpr int kEvents = 3000;
  std::thread producer([&] {
    for (int i = 0; i < kEvents; ++i) {
      ASSERT_TRUE(publisher.Queue("/tasks/exit", Exit(i)).ok());
      if (i % 10 == 9) {
        absl::SleepFor(absl::Milliseconds(2));  // a steady flow, so the kills land mid-way
      }
    }
  });
  for (uint64_t mark : {uint64_t{600}, uint64_t{1800}}) {
    ASSERT_TRUE(WaitFor([&] { return publisher.acknowledged() >= mark; }, absl::Seconds(30)))
        << publisher.acknowledged() << " " << publisher.status() << "\n" << eventd_.ReadLog();
    eventd_.Kill();
    ASSERT_TRUE(eventd_.Start().ok()) << eventd_.ReadLog();
  }
  producer.join();
  ASSERT_TRUE(publisher.WaitForAcknowledged(kEvents, absl::Seconds(60)))
      << publisher.acknowledged() << " " << publisher.status();
  EXPECT_GE(publisher.reconnects(), 2);

  events::EventdSubscribeOptions so;
  so.start_sequence = 1;
  Collector sub(eventd_.address(), so);
  ASSERT_TRUE(sub.WaitSize(kEvents, absl::Seconds(30))) << sub.size() << " " << StreamState(nats_);
  auto events_stub = cpb::Events::NewStub(Dial(eventd_.address()));
  std::optional<std::vector<cpb::Envelope>> settled = sub.UpToSentinel(*events_stub);
  ASSERT_TRUE(settled.has_value()) << sub.state();
  std::vector<cpb::Envelope> got = *settled;
  ASSERT_EQ(got.size(), static_cast<size_t>(kEvents)) << StreamState(nats_);
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(PidOf(got[i]), i) << "at " << i;
    EXPECT_EQ(got[i].namespace_(), "resent");
  }
  // A bad topic is refused at once; the publisher keeps going.
  EXPECT_EQ(publisher.Queue("no-slash", Exit(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(publisher.Publish("resent", "/tasks/exit", Exit(kEvents)).ok());
  EXPECT_EQ(publisher.Publish("other", "/tasks/exit", Exit(0)).code(),
            absl::StatusCode::kInvalidArgument);
}

// With the bus down an event cannot be stored: the call ends Unavailable and acknowledges
// nothing, and eventd keeps serving (the next call works once the bus is back).
TEST_F(StreamingPublishTest, BusDownIsUnavailable) {
  auto publish_one = [&](uint64_t* through) {
    grpc::Status status;
    std::tie(*through, status) = PublishCall(*stub_, {StreamRequest(0, 1, "/tasks/exit")});
    return status;
  };
  nats_.Stop();
  uint64_t through = 0;
  grpc::Status status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = publish_one(&through);
        return status.error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      absl::Seconds(20)))
      << status.error_code() << " " << status.error_message();
  EXPECT_EQ(through, 0u);
  nats_.Start();
  ASSERT_TRUE(WaitFor([&] { return publish_one(&through).ok(); }, absl::Seconds(30)))
      << eventd_.ReadLog();
  EXPECT_EQ(through, 1u);
}

}  // namespace
}  // namespace berth::integration
