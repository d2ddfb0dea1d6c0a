// contentd publishes /content/delete to a real nats-server as containerd Envelopes, and loses
// none of them while NATS is down: they wait in the outbox and go out, in order and once each,
// when the server is back on the same port.
//
// Two observers: a core NATS subscription (what a live subscriber sees; it reconnects by itself)
// and a JetStream stream on berth.events.> created before contentd starts (it stores whatever
// reaches the server even while the subscriber is still reconnecting, so "all arrived" does not
// depend on who reconnects first).

#include <nats/nats.h>

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "containerd/events/content.pb.h"
#include "containerd/services/events/v1/events.pb.h"
#include "integration/harness.h"
#include "lib/base/grpc_client.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

namespace api = ::containerd::services::content::v1;
using ::berth::testing::NatsServer;
using ::berth::testing::TempDir;

constexpr char kNamespace[] = "events-test";
constexpr char kSubject[] = "berth.events.events-test.content.delete";
constexpr char kStream[] = "BERTH_EVENTS_TEST";
constexpr int kOutageDeletes = 50;

// One received message, decoded.
struct Event {
  std::string subject;
  std::string msg_id;  // Nats-Msg-Id header, empty if none
  containerd::services::events::v1::Envelope envelope;
  std::string digest;  // from the ContentDelete inside; empty if it did not decode
};

Event Decode(natsMsg* msg) {
  Event event;
  event.subject = natsMsg_GetSubject(msg);
  const char* id = nullptr;
  if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id != nullptr) {
    event.msg_id = id;
  }
  if (event.envelope.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg))) {
    containerd::events::ContentDelete deleted;
    if (deleted.ParseFromString(event.envelope.event().value())) {
      event.digest = deleted.digest();
    }
  }
  return event;
}

// A nats.c connection that reconnects forever, every 20 ms, with a core subscription on
// berth.events.> whose messages a background thread (nats.c's) appends to a list.
class Subscriber {
 public:
  explicit Subscriber(const std::string& url) {
    natsOptions* opts = nullptr;
    ExpectOk(natsOptions_Create(&opts));
    ExpectOk(natsOptions_SetURL(opts, url.c_str()));
    ExpectOk(natsOptions_SetMaxReconnect(opts, -1));
    ExpectOk(natsOptions_SetReconnectWait(opts, 20));
    ExpectOk(natsOptions_SetReconnectBufSize(opts, 0));
    natsStatus s = natsConnection_Connect(&nc_, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK) {
      ADD_FAILURE() << "connect " << url << ": " << natsStatus_GetText(s);
      return;
    }
    s = natsConnection_Subscribe(&sub_, nc_, "berth.events.>", &Subscriber::OnMessage, this);
    EXPECT_EQ(s, NATS_OK) << natsStatus_GetText(s);
    EXPECT_EQ(natsConnection_Flush(nc_), NATS_OK);
  }
  ~Subscriber() {
    natsSubscription_Destroy(sub_);
    natsConnection_Destroy(nc_);
  }
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  natsConnection* connection() { return nc_; }
  bool connected() { return nc_ != nullptr && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

  std::vector<Event> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }

 private:
  static void ExpectOk(natsStatus s) { ASSERT_EQ(s, NATS_OK) << natsStatus_GetText(s); }

  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<Subscriber*>(closure);
    Event event = Decode(msg);
    natsMsg_Destroy(msg);
    absl::MutexLock lock(&self->mu_);
    self->events_.push_back(std::move(event));
  }

  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
  absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

// A JetStream stream on berth.events.> (file storage, so it survives the server's restart).
class Stream {
 public:
  explicit Stream(natsConnection* nc) {
    natsStatus s = natsConnection_JetStream(&js_, nc, nullptr);
    if (s != NATS_OK) {
      ADD_FAILURE() << "jetstream: " << natsStatus_GetText(s);
      return;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = kStream;
    const char* subjects[] = {"berth.events.>"};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo* info = nullptr;
    jsErrCode err = static_cast<jsErrCode>(0);
    s = js_AddStream(&info, js_, &cfg, nullptr, &err);
    EXPECT_EQ(s, NATS_OK) << "add stream: " << natsStatus_GetText(s) << " (" << err << ") "
                          << nats_GetLastError(nullptr);
    jsStreamInfo_Destroy(info);
  }
  ~Stream() { jsCtx_Destroy(js_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Messages stored so far; -1 if the server cannot say right now (e.g. reconnecting).
  int64_t Count() {
    jsStreamInfo* info = nullptr;
    jsErrCode err = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&info, js_, kStream, nullptr, &err) != NATS_OK) {
      return -1;
    }
    int64_t n = static_cast<int64_t>(info->State.Msgs);
    jsStreamInfo_Destroy(info);
    return n;
  }

  // Every stored message, in stream order.
  std::vector<Event> All() {
    std::vector<Event> out;
    int64_t n = Count();
    for (int64_t seq = 1; seq <= n; ++seq) {
      natsMsg* msg = nullptr;
      jsErrCode err = static_cast<jsErrCode>(0);
      natsStatus s = js_GetMsg(&msg, js_, kStream, static_cast<uint64_t>(seq), nullptr, &err);
      if (s != NATS_OK) {
        ADD_FAILURE() << "get msg " << seq << ": " << natsStatus_GetText(s);
        continue;
      }
      out.push_back(Decode(msg));
      natsMsg_Destroy(msg);
    }
    return out;
  }

 private:
  jsCtx* js_ = nullptr;
};

std::vector<std::string> Digests(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) {
    out.push_back(e.digest);
  }
  return out;
}

class ContentdEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    subscriber_ = std::make_unique<Subscriber>(nats_.url());
    ASSERT_TRUE(subscriber_->connected());
    stream_ = std::make_unique<Stream>(subscriber_->connection());
    ASSERT_EQ(stream_->Count(), 0);

    Contentd::Options options;
    options.nats_url = nats_.url();
    contentd_ = std::make_unique<Contentd>(dir_.path(), options);
    absl::Status status = contentd_->Start();
    ASSERT_TRUE(status.ok()) << status;
    stub_ = api::Content::NewStub(Dial(contentd_->address()));
  }

  void TearDown() override {
    stub_.reset();
    int status = contentd_->Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "contentd exit " << status;
    if (HasFailure()) {
      std::cerr << "contentd log:\n" << contentd_->ReadLog() << "\nnats-server log:\n"
                << nats_.ReadLog() << "\n";
    }
  }

  std::string Commit(const std::string& ref, const std::string& data) {
    absl::StatusOr<std::string> digest = CommitBlob(*stub_, kNamespace, ref, data);
    EXPECT_TRUE(digest.ok()) << digest.status();
    return digest.ok() ? *digest : "";
  }

  TempDir dir_;
  NatsServer nats_;
  std::unique_ptr<Subscriber> subscriber_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Contentd> contentd_;
  std::unique_ptr<api::Content::Stub> stub_;
};

TEST_F(ContentdEventsTest, DeletesArriveAsEnvelopesAndSurviveAnOutage) {
  // One delete while NATS is up: the Envelope arrives live.
  std::string first = Commit("events-first", "first blob\n");
  absl::Status status = DeleteBlob(*stub_, kNamespace, first);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_TRUE(testing::WaitFor([&] { return subscriber_->count() >= 1; }, absl::Seconds(20)))
      << "no event within 20 s";
  {
    std::vector<Event> events = subscriber_->events();
    ASSERT_EQ(events.size(), 1u);
    const Event& e = events[0];
    EXPECT_EQ(e.subject, kSubject);
    EXPECT_EQ(e.envelope.namespace_(), kNamespace);
    EXPECT_EQ(e.envelope.topic(), "/content/delete");
    EXPECT_TRUE(absl::EndsWith(e.envelope.event().type_url(), "containerd.events.ContentDelete"))
        << e.envelope.event().type_url();
    EXPECT_EQ(e.digest, first);
    EXPECT_GT(e.envelope.timestamp().seconds(), 0);
    EXPECT_FALSE(e.msg_id.empty()) << "no Nats-Msg-Id header";
  }

  // 50 more blobs, deleted while nats-server is down.
  std::vector<std::string> digests;
  for (int i = 0; i < kOutageDeletes; ++i) {
    digests.push_back(Commit(absl::StrCat("events-", i), absl::StrCat("blob number ", i, "\n")));
  }
  nats_.Stop();
  for (const std::string& digest : digests) {
    status = DeleteBlob(*stub_, kNamespace, digest);
    ASSERT_TRUE(status.ok()) << "delete must not depend on NATS: " << status;
  }
  EXPECT_EQ(subscriber_->count(), 1u) << "events arrived while the server was down?";

  // Back on the same port: everything arrives, in order, once.
  nats_.Start();
  bool all_stored = testing::WaitFor(
      [&] { return stream_->Count() >= 1 + kOutageDeletes; }, absl::Seconds(60));
  ASSERT_TRUE(all_stored) << "stream holds " << stream_->Count() << " of "
                          << 1 + kOutageDeletes;
  // A sentinel delete: the outbox goes out in order, so once the sentinel is seen every resend
  // of an earlier event (a duplicate) would have been seen too. No quiet period to sleep through.
  std::string sentinel = Commit("events-sentinel", "sentinel\n");
  status = DeleteBlob(*stub_, kNamespace, sentinel);
  ASSERT_TRUE(status.ok()) << status;
  auto has_sentinel = [&](const std::vector<Event>& events) {
    return !events.empty() && events.back().digest == sentinel;
  };
  EXPECT_TRUE(testing::WaitFor([&] { return has_sentinel(stream_->All()); }, absl::Seconds(30)))
      << "sentinel never reached the stream";
  EXPECT_TRUE(
      testing::WaitFor([&] { return has_sentinel(subscriber_->events()); }, absl::Seconds(30)))
      << "sentinel never reached the live subscriber";

  std::vector<std::string> want = {first};
  want.insert(want.end(), digests.begin(), digests.end());
  want.push_back(sentinel);

  std::vector<Event> stored = stream_->All();
  EXPECT_EQ(Digests(stored), want) << "JetStream saw them out of order, or some twice";

  std::vector<Event> live = subscriber_->events();
  std::set<std::string> ids;
  std::set<std::string> seen;
  for (const Event& e : live) {
    EXPECT_EQ(e.subject, kSubject);
    EXPECT_TRUE(ids.insert(e.msg_id).second) << "Msg-Id " << e.msg_id << " delivered twice";
    EXPECT_TRUE(seen.insert(e.digest).second) << e.digest << " delivered twice";
  }
  // What the live subscriber saw is in order. It may have missed some: core NATS keeps nothing
  // for a subscriber that reconnects after the publisher drained its outbox (the stream above
  // is the proof that every event reached the server).
  RecordProperty("live_events", static_cast<int>(live.size()));
  std::vector<std::string> live_digests = Digests(live);
  size_t pos = 0;
  for (const std::string& d : live_digests) {
    while (pos < want.size() && want[pos] != d) {
      ++pos;
    }
    EXPECT_LT(pos, want.size()) << d << " out of order";
  }
}

}  // namespace
}  // namespace berth::integration
