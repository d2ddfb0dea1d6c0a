// NatsPublisher against a real nats-server: delivery, order, outage and restart, credentials,
// crash recovery from the outbox.

#include <nats/nats.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "containerd/events/task.pb.h"
#include "containerd/services/events/v1/events.pb.h"
#include "gtest/gtest.h"
#include "lib/events/nats_publisher.h"
#include "lib/events/outbox.h"
#include "lib/testing/testing.h"
#include "prometheus/registry.h"

namespace berth::events {
namespace {

using berth::testing::NatsServer;
using berth::testing::TempDir;
using berth::testing::WaitFor;
using containerd::events::TaskExit;
using containerd::services::events::v1::Envelope;

TaskExit MakeExit(int i) {
  TaskExit exit;
  exit.set_container_id(absl::StrCat("c", i));
  exit.set_id(absl::StrCat("c", i));
  exit.set_pid(static_cast<uint32_t>(1000 + i));
  exit.set_exit_status(static_cast<uint32_t>(i % 256));
  return exit;
}

struct Received {
  std::string subject;
  std::string msg_id;
  Envelope envelope;
};

Received Decode(natsMsg* msg) {
  Received r;
  r.subject = natsMsg_GetSubject(msg);
  const char* id = nullptr;
  if (natsMsgHeader_Get(msg, kMsgIdHeader, &id) == NATS_OK && id != nullptr) {
    r.msg_id = id;
  }
  EXPECT_TRUE(r.envelope.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)));
  return r;
}

// A core NATS subscriber on berth.events.>, subscribed when the constructor returns.
class Subscriber {
 public:
  explicit Subscriber(const NatsServer& server) {
    natsOptions* opts = nullptr;
    EXPECT_EQ(natsOptions_Create(&opts), NATS_OK);
    natsOptions_SetURL(opts, server.url().c_str());
    std::string creds = server.credentials();
    if (!creds.empty()) {
      size_t colon = creds.find(':');
      natsOptions_SetUserInfo(opts, creds.substr(0, colon).c_str(),
                              creds.substr(colon + 1).c_str());
    }
    EXPECT_EQ(natsConnection_Connect(&conn_, opts), NATS_OK);
    natsOptions_Destroy(opts);
    EXPECT_EQ(natsConnection_SubscribeSync(&sub_, conn_, "berth.events.>"), NATS_OK);
    natsSubscription_SetPendingLimits(sub_, -1, -1);
    EXPECT_EQ(natsConnection_FlushTimeout(conn_, 5000), NATS_OK);
  }
  ~Subscriber() {
    natsSubscription_Destroy(sub_);
    natsConnection_Close(conn_);
    natsConnection_Destroy(conn_);
  }

  // Up to `n` messages, waiting at most `timeout` for each.
  std::vector<Received> Next(int n, absl::Duration timeout = absl::Seconds(10)) {
    std::vector<Received> out;
    for (int i = 0; i < n; ++i) {
      natsMsg* msg = nullptr;
      if (natsSubscription_NextMsg(&msg, sub_, absl::ToInt64Milliseconds(timeout)) != NATS_OK) {
        break;
      }
      out.push_back(Decode(msg));
      natsMsg_Destroy(msg);
    }
    return out;
  }

 private:
  natsConnection* conn_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

NatsPublisherOptions FastOptions(const std::string& outbox, const std::string& url) {
  NatsPublisherOptions o;
  o.outbox_path = outbox;
  o.url = url;
  o.reconnect_wait_min = absl::Milliseconds(20);
  o.reconnect_wait_max = absl::Milliseconds(200);
  o.flush_timeout = absl::Seconds(2);
  return o;
}

std::unique_ptr<NatsPublisher> MustOpen(NatsPublisherOptions o) {
  absl::StatusOr<std::unique_ptr<NatsPublisher>> p = NatsPublisher::Open(std::move(o));
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

// The events' bodies, checked to be TaskExit(i) for consecutive i starting at `first`.
void ExpectExits(const std::vector<Received>& got, int first, const std::string& publisher_id,
                 int64_t first_row) {
  std::set<std::string> ids, bodies;
  for (size_t k = 0; k < got.size(); ++k) {
    const Received& r = got[k];
    int i = first + static_cast<int>(k);
    EXPECT_EQ(r.subject, "berth.events.default.tasks.exit");
    EXPECT_EQ(r.envelope.namespace_(), "default");
    EXPECT_EQ(r.envelope.topic(), "/tasks/exit");
    EXPECT_EQ(r.envelope.event().type_url(), "containerd.events.TaskExit");
    TaskExit exit;
    ASSERT_TRUE(exit.ParseFromString(r.envelope.event().value()));
    ASSERT_EQ(exit.container_id(), absl::StrCat("c", i)) << "out of order at " << k;
    EXPECT_EQ(exit.pid(), static_cast<uint32_t>(1000 + i));
    EXPECT_EQ(r.msg_id, absl::StrCat(publisher_id, "-", first_row + static_cast<int64_t>(k)));
    EXPECT_TRUE(ids.insert(r.msg_id).second) << "duplicate Msg-Id " << r.msg_id;
    EXPECT_TRUE(bodies.insert(r.envelope.event().value()).second) << "duplicate event " << i;
  }
}

double GaugeValue(prometheus::Registry& registry, const std::string& name) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name == name && !family.metric.empty()) {
      return family.metric[0].gauge.value;
    }
  }
  return -1;
}

TEST(SubjectForTest, TopicSlashesBecomeDots) {
  EXPECT_EQ(SubjectFor("default", "/tasks/exit"), "berth.events.default.tasks.exit");
  EXPECT_EQ(SubjectFor("k8s.io", "/images/create"), "berth.events.k8s.io.images.create");
  EXPECT_EQ(SubjectFor("default", "/tasks/exec-added"), "berth.events.default.tasks.exec-added");
}

TEST(TypeUrlTest, ContainerdStyle) {
  EXPECT_EQ(TypeUrlFor(TaskExit()), "containerd.events.TaskExit");
}

TEST(NatsPublisherTest, NoUrlJustStores) {
  TempDir dir;
  auto registry = std::make_shared<prometheus::Registry>();
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), "");
  o.metrics = registry;
  o.metric_labels = {{"daemon", "test"}};
  std::string id;
  {
    auto p = MustOpen(o);
    ASSERT_NE(p, nullptr);
    id = p->publisher_id();
    EXPECT_EQ(id.size(), 24u);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
    }
    EXPECT_EQ(p->pending(), 3);
    EXPECT_EQ(GaugeValue(*registry, "berth_events_outbox_pending"), 3);
    EXPECT_FALSE(p->WaitForDelivery(absl::Milliseconds(50)));
    EXPECT_FALSE(p->connected());
  }
  auto p = MustOpen(o);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->publisher_id(), id);
  EXPECT_EQ(p->pending(), 3);
  EXPECT_EQ(GaugeValue(*registry, "berth_events_outbox_pending"), 3);
}

// Publishes from many threads are committed in groups: every one that returned OK is in the
// outbox once, also after the publisher is reopened.
TEST(NatsPublisherTest, ConcurrentPublishesAreAllDurable) {
  TempDir dir;
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), "");
  constexpr int kThreads = 8, kEach = 400;
  {
    auto p = MustOpen(o);
    ASSERT_NE(p, nullptr);
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          if (p->Publish("default", "/tasks/exit", MakeExit(t * kEach + i)).ok()) {
            ok.fetch_add(1);
          }
        }
      });
    }
    for (std::thread& t : threads) {
      t.join();
    }
    EXPECT_EQ(ok.load(), kThreads * kEach);
    EXPECT_EQ(p->pending(), kThreads * kEach);
  }
  auto p = MustOpen(o);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->pending(), kThreads * kEach);
}

// PublishAll stores its events in one outbox transaction: in order, all or none (one bad
// topic stores nothing of the batch).
TEST(NatsPublisherTest, PublishAllStoresEveryEventInOrderOrNone) {
  TempDir dir;
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), "");
  {
    auto p = MustOpen(o);
    ASSERT_NE(p, nullptr);
    TaskExit a = MakeExit(1), b = MakeExit(2), c = MakeExit(3);
    ASSERT_TRUE(p->PublishAll("default", {{"/tasks/exit", &a}, {"/tasks/start", &b},
                                          {"/tasks/delete", &c}})
                    .ok());
    EXPECT_EQ(p->PublishAll("default", {{"/tasks/exit", &a}, {"bad topic", &b}}).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(p->pending(), 3);
  }
  absl::StatusOr<std::unique_ptr<Outbox>> outbox = Outbox::Open(dir.Join("outbox.db"));
  ASSERT_TRUE(outbox.ok()) << outbox.status();
  absl::StatusOr<std::vector<OutboxRow>> rows = (*outbox)->ReadAfter(0, 10);
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::vector<std::string> subjects;
  for (const OutboxRow& row : *rows) {
    subjects.push_back(row.subject);
  }
  EXPECT_EQ(subjects, (std::vector<std::string>{"berth.events.default.tasks.exit",
                                                "berth.events.default.tasks.start",
                                                "berth.events.default.tasks.delete"}));
}

TEST(NatsPublisherTest, RejectsBadNamespaceAndTopic) {
  TempDir dir;
  auto p = MustOpen(FastOptions(dir.Join("outbox.db"), ""));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Publish("", "/tasks/exit", MakeExit(0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->Publish("a b", "/tasks/exit", MakeExit(0)).code(),
            absl::StatusCode::kInvalidArgument);
  for (const char* topic : {"", "/", "tasks/exit", "/tasks//exit", "/tasks/exit/", "/t*", "/>"}) {
    EXPECT_EQ(p->Publish("default", topic, MakeExit(0)).code(),
              absl::StatusCode::kInvalidArgument)
        << topic;
  }
  TaskExit huge;
  huge.set_container_id(std::string(2 << 20, 'x'));
  EXPECT_EQ(p->Publish("default", "/tasks/exit", huge).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->pending(), 0);
}

TEST(NatsPublisherTest, BadCredentialsFormat) {
  TempDir dir;
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), "nats://127.0.0.1:1");
  o.credentials = "nocolon";
  EXPECT_EQ(NatsPublisher::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NatsPublisherTest, DeliversInOrderWhileServerUp) {
  NatsServer server;
  Subscriber sub(server);
  TempDir dir;
  auto registry = std::make_shared<prometheus::Registry>();
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), server.url());
  o.metrics = registry;
  auto p = MustOpen(o);
  ASSERT_NE(p, nullptr);
  absl::Time before = absl::Now();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
  }
  std::vector<Received> got = sub.Next(20);
  ASSERT_EQ(got.size(), 20u);
  ExpectExits(got, 0, p->publisher_id(), 1);
  int64_t ts = got[0].envelope.timestamp().seconds();
  EXPECT_GE(ts, absl::ToUnixSeconds(before) - 1);
  EXPECT_LE(ts, absl::ToUnixSeconds(absl::Now()) + 1);
  EXPECT_TRUE(p->WaitForDelivery(absl::Seconds(10)));
  EXPECT_EQ(p->delivered(), 20);
  EXPECT_EQ(GaugeValue(*registry, "berth_events_outbox_pending"), 0);
  EXPECT_TRUE(p->connected());
  EXPECT_TRUE(sub.Next(1, absl::Milliseconds(200)).empty());  // nothing more
}

TEST(NatsPublisherTest, Credentials) {
  NatsServer::Options so;
  so.user = "berth";
  so.password = "s3cret:with-colon";
  NatsServer server(so);
  Subscriber sub(server);
  TempDir dir;

  NatsPublisherOptions bad = FastOptions(dir.Join("bad.db"), server.url());
  bad.credentials = "berth:wrong";
  auto rejected = MustOpen(bad);
  ASSERT_NE(rejected, nullptr);
  ASSERT_TRUE(rejected->Publish("default", "/tasks/exit", MakeExit(0)).ok());

  NatsPublisherOptions good = FastOptions(dir.Join("good.db"), server.url());
  good.credentials = server.credentials();
  auto p = MustOpen(good);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(7)).ok());
  std::vector<Received> got = sub.Next(1);
  ASSERT_EQ(got.size(), 1u);
  ExpectExits(got, 7, p->publisher_id(), 1);
  EXPECT_TRUE(sub.Next(1, absl::Milliseconds(300)).empty());  // the rejected one stays put
  EXPECT_EQ(rejected->pending(), 1);
  EXPECT_FALSE(rejected->connected());
}

// Reads the whole stream by sequence: every message the server accepted, in its order.
std::vector<Received> ReadStream(jsCtx* js, const char* stream) {
  std::vector<Received> out;
  jsStreamInfo* info = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  EXPECT_EQ(js_GetStreamInfo(&info, js, stream, nullptr, &jerr), NATS_OK);
  if (info == nullptr) {
    return out;
  }
  uint64_t first = info->State.FirstSeq, last = info->State.LastSeq;
  jsStreamInfo_Destroy(info);
  for (uint64_t seq = first; seq <= last && seq != 0; ++seq) {
    natsMsg* msg = nullptr;
    if (js_GetMsg(&msg, js, stream, seq, nullptr, &jerr) != NATS_OK) {
      ADD_FAILURE() << "get " << seq;
      continue;
    }
    out.push_back(Decode(msg));
    natsMsg_Destroy(msg);
  }
  return out;
}

// A JetStream stream "EVENTS" over berth.events.> on `server` (file storage), with a client
// connection of its own, as eventd would create it: what the server stored is read back by
// sequence. `duplicates`: the stream's duplicate window (zero: the server's default).
class EventsStream {
 public:
  EventsStream(const NatsServer& server, absl::Duration duplicates = absl::ZeroDuration()) {
    EXPECT_EQ(natsConnection_ConnectTo(&nc_, server.url().c_str()), NATS_OK);
    EXPECT_EQ(natsConnection_JetStream(&js_, nc_, nullptr), NATS_OK);
    jsStreamConfig_Init(&cfg_);
    cfg_.Name = "EVENTS";
    cfg_.Subjects = subjects_;
    cfg_.SubjectsLen = 1;
    cfg_.Storage = js_FileStorage;
    cfg_.Duplicates = absl::ToInt64Nanoseconds(duplicates);
    Create();
  }
  ~EventsStream() {
    jsCtx_Destroy(js_);
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
  EventsStream(const EventsStream&) = delete;
  EventsStream& operator=(const EventsStream&) = delete;

  void Create() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_AddStream(&si, js_, &cfg_, nullptr, &jerr), NATS_OK)
        << jerr << " " << nats_GetLastError(nullptr);
    jsStreamInfo_Destroy(si);
  }
  void Delete() {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_DeleteStream(js_, "EVENTS", nullptr, &jerr), NATS_OK) << jerr;
  }
  std::vector<Received> Read() { return ReadStream(js_, "EVENTS"); }
  // How many messages the stream holds (0 when it cannot say).
  uint64_t Count() {
    jsStreamInfo* info = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&info, js_, "EVENTS", nullptr, &jerr) != NATS_OK) {
      return 0;
    }
    uint64_t n = info->State.Msgs;
    jsStreamInfo_Destroy(info);
    return n;
  }
  bool connected() { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  const char* subjects_[1] = {"berth.events.>"};
  jsStreamConfig cfg_;
};

TEST(NatsPublisherTest, OutageKeepsEventsAndDeliversAfterRestartInOrder) {
  NatsServer server;
  // A JetStream stream records everything the server accepts, across the restart (same store
  // dir), so the check does not depend on a subscriber reconnecting before the publisher does.
  // The duplicate window is the server's minimum (100 ms), far below the publisher's resend
  // delay (a failed 2 s flush), so JetStream would not hide a duplicate from us.
  EventsStream stream(server, absl::Milliseconds(100));

  TempDir dir;
  auto p = MustOpen(FastOptions(dir.Join("outbox.db"), server.url()));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
  }
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(10)));

  server.Stop();
  ASSERT_TRUE(berth::testing::WaitFor([&] { return !p->connected(); }, absl::Seconds(10)));
  for (int i = 5; i < 505; ++i) {
    ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
  }
  EXPECT_EQ(p->pending(), 500);
  EXPECT_EQ(p->delivered(), 5);

  server.Start();
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(30))) << p->pending() << " still pending";
  EXPECT_EQ(p->delivered(), 505);

  ASSERT_TRUE(berth::testing::WaitFor([&] { return stream.connected(); }, absl::Seconds(20)));
  std::vector<Received> got = stream.Read();
  ASSERT_EQ(got.size(), 505u);
  ExpectExits(got, 0, p->publisher_id(), 1);
}

// The sender keeps many publishes in flight and deletes acknowledged rows in groups; with a
// window smaller than a batch and batches that do not divide the total, every event still
// reaches the stream once and in order, and the outbox ends empty.
TEST(NatsPublisherTest, PipelinedPublishesAreStoredOnceInOrder) {
  NatsServer server;
  EventsStream stream(server, absl::Milliseconds(100));  // hides no resend

  TempDir dir;
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), server.url());
  o.batch_size = 7;
  o.max_in_flight = 5;
  auto p = MustOpen(o);
  ASSERT_NE(p, nullptr);
  constexpr int kEvents = 1003;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
  }
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(30))) << p->pending() << " still pending";
  EXPECT_EQ(p->delivered(), kEvents);
  std::vector<Received> got = stream.Read();
  ASSERT_EQ(got.size(), static_cast<size_t>(kEvents));
  ExpectExits(got, 0, p->publisher_id(), 1);
}

// Once a stream has captured the events, its absence is an outage, not "no history wanted":
// a publish the server answers with "no responders" (what a nats-server stopping JetStream
// before it drops its clients answers) or a stream that is gone keeps the events in the outbox
// until a stream is back, instead of counting them delivered.
TEST(NatsPublisherTest, StreamGoneKeepsEventsUntilItIsBack) {
  NatsServer server;
  EventsStream stream(server);

  TempDir dir;
  auto p = MustOpen(FastOptions(dir.Join("outbox.db"), server.url()));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
  }
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(10)));
  ASSERT_EQ(stream.Read().size(), 3u);

  stream.Delete();
  for (int i = 3; i < 6; ++i) {
    ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
  }
  // Not a quiet second: the publisher has tried, seen the stream gone, and kept the events.
  ASSERT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(p->last_failure().message(),
                                 "no JetStream stream captures berth.events.> any more");
      },
      absl::Seconds(20)))
      << p->last_failure();
  EXPECT_EQ(p->pending(), 3);
  EXPECT_EQ(p->delivered(), 3);

  stream.Create();
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(20))) << p->pending() << " still pending";
  EXPECT_EQ(p->delivered(), 6);
  std::vector<Received> got = stream.Read();
  ASSERT_EQ(got.size(), 3u);
  ExpectExits(got, 3, p->publisher_id(), 4);
}

TEST(NatsPublisherTest, OutboxSurvivesPublisherRestart) {
  NatsServer server;
  Subscriber sub(server);
  TempDir dir;
  std::string outbox = dir.Join("outbox.db");
  std::string id;
  {
    // A publisher whose server is unreachable: it stores, and its destructor does not hang
    // in the middle of reconnect attempts. Port 1: nothing listens there, whereas a port
    // that was free a moment ago may be another test's server by the time we dial it.
    auto p = MustOpen(FastOptions(outbox, "nats://127.0.0.1:1"));
    ASSERT_NE(p, nullptr);
    id = p->publisher_id();
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
    }
    EXPECT_EQ(p->pending(), 50);
    absl::Time start = absl::Now();
    p.reset();
    EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  }
  EXPECT_TRUE(sub.Next(1, absl::Milliseconds(100)).empty());

  auto p = MustOpen(FastOptions(outbox, server.url()));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->publisher_id(), id);
  std::vector<Received> got = sub.Next(50);
  ASSERT_EQ(got.size(), 50u);
  ExpectExits(got, 0, id, 1);
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(10)));

  // Row ids keep growing after the outbox emptied, so Msg-Ids are never reused.
  ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(50)).ok());
  got = sub.Next(1);
  ASSERT_EQ(got.size(), 1u);
  ExpectExits(got, 50, id, 51);
  p.reset();
  p = MustOpen(FastOptions(outbox, server.url()));
  ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(51)).ok());
  got = sub.Next(1);
  ASSERT_EQ(got.size(), 1u);
  ExpectExits(got, 51, id, 52);
}

// The child side of SigkillMidDeliveryLosesNothingAndStoresEachEventOnce: when the environment
// names an outbox, the process delivers it and exits before any test runs (so it is no test
// case of its own, and no case shows as skipped).
class DeliverOutboxChild : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* outbox = std::getenv("BERTH_TEST_DELIVER_OUTBOX");
    const char* url = std::getenv("BERTH_TEST_DELIVER_URL");
    if (outbox == nullptr || url == nullptr) {
      return;
    }
    NatsPublisherOptions o = FastOptions(outbox, url);
    o.batch_size = 64;  // many sends between deletes: more kills land between the two
    absl::StatusOr<std::unique_ptr<NatsPublisher>> p = NatsPublisher::Open(o);
    if (!p.ok()) {
      std::fprintf(stderr, "child: %s\n", p.status().ToString().c_str());
      std::_Exit(1);
    }
    if (!(*p)->WaitForDelivery(absl::Seconds(60))) {
      std::fprintf(stderr, "child: %lld still pending\n",
                   static_cast<long long>((*p)->pending()));
      std::_Exit(1);
    }
    p->reset();
    std::_Exit(0);
  }
};
::testing::Environment* const kDeliverOutboxChild =
    ::testing::AddGlobalTestEnvironment(new DeliverOutboxChild);

// The sender SIGKILLed again and again while it delivers a full outbox: every kill can fall
// between "the stream stored it" and "deleted from the outbox", so the next run sends those
// rows again. The stream ends with every event exactly once, in outbox order (its
// Nats-Msg-Id deduplication drops the resent copies).
TEST(NatsPublisherTest, SigkillMidDeliveryLosesNothingAndStoresEachEventOnce) {
  NatsServer server;
  EventsStream stream(server);
  TempDir dir;
  std::string outbox = dir.Join("outbox.db");
  constexpr int kEvents = 5000;
  std::string id;
  {
    auto p = MustOpen(FastOptions(outbox, ""));  // stored only
    ASSERT_NE(p, nullptr);
    id = p->publisher_id();
    for (int i = 0; i < kEvents; ++i) {
      ASSERT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(i)).ok());
    }
  }
  testing::Process::Options child;
  child.argv = {std::filesystem::read_symlink("/proc/self/exe").string(),
                // Any one test: environments are set up only when a test is to run.
                "--gtest_filter=SubjectForTest.TopicSlashesBecomeDots"};
  child.env = {{"BERTH_TEST_DELIVER_OUTBOX", outbox}, {"BERTH_TEST_DELIVER_URL", server.url()}};
  child.log_dir = dir.path();
  // Kills at every tenth of the way, each once the stream has grown past it: so each lands
  // while the sender has events in flight.
  int kills = 0;
  for (int tenth = 1; tenth <= 9; ++tenth) {
    testing::Process deliverer(child);
    uint64_t mark = static_cast<uint64_t>(kEvents) * tenth / 10;
    bool reached = WaitFor([&] { return stream.Count() >= mark || !deliverer.running() ||
                                        deliverer.TryReap(); },
                           absl::Seconds(30));
    ASSERT_TRUE(reached) << "no progress to " << mark << ":\n" << deliverer.ReadLog();
    if (!deliverer.running()) {
      break;  // it finished first
    }
    deliverer.Kill();
    ++kills;
    // A restart delay, as a supervisor's: the resent copies then come well after the first
    // ones, so only the stream's duplicate window (minutes) catches them.
    absl::SleepFor(absl::Milliseconds(250));
  }
  testing::Process last(child);
  int status = last.Wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << last.ReadLog();
  std::vector<Received> got = stream.Read();
  ASSERT_EQ(got.size(), static_cast<size_t>(kEvents));
  ExpectExits(got, 0, id, 1);
  EXPECT_GE(kills, 3) << "too few kills landed mid-delivery";
  auto check = MustOpen(FastOptions(outbox, ""));
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->pending(), 0);
}

TEST(NatsPublisherTest, ConcurrentPublishersOneOutboxEach) {
  NatsServer server;
  Subscriber sub(server);
  TempDir dir;
  auto p = MustOpen(FastOptions(dir.Join("outbox.db"), server.url()));
  ASSERT_NE(p, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        EXPECT_TRUE(p->Publish("default", "/tasks/exit", MakeExit(t * 100 + i)).ok());
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  std::vector<Received> got = sub.Next(100);
  ASSERT_EQ(got.size(), 100u);
  // Each thread's events stay in its order; Msg-Ids are consecutive.
  std::vector<int> last(4, -1);
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].msg_id, absl::StrCat(p->publisher_id(), "-", k + 1));
    TaskExit exit;
    ASSERT_TRUE(exit.ParseFromString(got[k].envelope.event().value()));
    int n = static_cast<int>(exit.pid()) - 1000;
    EXPECT_GT(n % 100, last[n / 100]);
    last[n / 100] = n % 100;
  }
  EXPECT_TRUE(p->WaitForDelivery(absl::Seconds(10)));
}

// PublishOnce stores an event once per key, in the event's own transaction, across a reopen
// (a crash between the publish and the caller's own note of it), until the key is forgotten.
TEST(NatsPublisherTest, PublishOnceStoresOncePerKeyAcrossReopenUntilForgotten) {
  NatsServer server;
  Subscriber sub(server);
  TempDir dir;
  NatsPublisherOptions o = FastOptions(dir.Join("outbox.db"), "");
  std::string id;
  {
    auto p = MustOpen(o);
    ASSERT_NE(p, nullptr);
    id = p->publisher_id();
    ASSERT_TRUE(p->PublishOnce("default", "/tasks/exit", MakeExit(0), "exit/c0").ok());
    ASSERT_TRUE(p->PublishOnce("default", "/tasks/exit", MakeExit(0), "exit/c0").ok());
    EXPECT_EQ(p->pending(), 1);
  }
  o.url = server.url();
  auto p = MustOpen(o);
  ASSERT_NE(p, nullptr);
  // The repeat after the "crash": accepted, not stored; another key is.
  ASSERT_TRUE(p->PublishOnce("default", "/tasks/exit", MakeExit(0), "exit/c0").ok());
  ASSERT_TRUE(p->PublishOnce("default", "/tasks/exit", MakeExit(1), "exit/c1").ok());
  std::vector<Received> got = sub.Next(2);
  ASSERT_EQ(got.size(), 2u);
  ExpectExits(got, 0, id, 1);
  ASSERT_TRUE(p->WaitForDelivery(absl::Seconds(10)));
  // Delivered and deleted from the outbox: the key still holds.
  ASSERT_TRUE(p->PublishOnce("default", "/tasks/exit", MakeExit(0), "exit/c0").ok());
  EXPECT_EQ(p->pending(), 0);
  // Forgotten: the key may be used again.
  ASSERT_TRUE(p->Forget("exit/c0").ok());
  ASSERT_TRUE(p->Forget("never-used").ok());
  ASSERT_TRUE(p->PublishOnce("default", "/tasks/exit", MakeExit(2), "exit/c0").ok());
  got = sub.Next(1);
  ASSERT_EQ(got.size(), 1u);
  ExpectExits(got, 2, id, 3);
}

}  // namespace
}  // namespace berth::events
