// eventd's services in this process (no eventd binary): over an in-memory EventLog whose
// subscriptions break on purpose, and over the real JetStreamLog on a nats-server. What a
// subscriber sees at the edges of the history: a replay that turns live while events are
// published, a start past the end, a start older than what the stream keeps, and Forward.

#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "berth/events/v1/events.grpc.pb.h"
#include "containerd/events/task.pb.h"
#include "containerd/services/events/v1/events.grpc.pb.h"
#include "lib/events/publisher.h"
#include "lib/testing/testing.h"
#include "services/eventd/event_log.h"
#include "services/eventd/events_service.h"

namespace berth::eventd {
namespace {

namespace cpb = ::containerd::services::events::v1;
namespace bpb = ::berth::events::v1;
using ::berth::testing::NatsServer;
using ::berth::testing::TempDir;
using ::berth::testing::WaitFor;

constexpr char kSentinelTopic[] = "/test/sentinel";

containerd::events::TaskExit Exit(int pid) {
  containerd::events::TaskExit exit;
  exit.set_container_id(absl::StrCat("c", pid));
  exit.set_pid(static_cast<uint32_t>(pid));
  return exit;
}

Envelope EnvelopeOf(int pid, const std::string& topic = "/tasks/exit") {
  Envelope envelope;
  envelope.set_namespace_("default");
  envelope.set_topic(topic);
  envelope.mutable_timestamp()->set_seconds(1700000000 + pid);
  envelope.mutable_event()->set_type_url(events::TypeUrlFor(Exit(pid)));
  Exit(pid).SerializeToString(envelope.mutable_event()->mutable_value());
  return envelope;
}

int PidOf(const Envelope& envelope) {
  containerd::events::TaskExit exit;
  EXPECT_TRUE(exit.ParseFromString(envelope.event().value()));
  return static_cast<int>(exit.pid());
}

// An EventLog in memory. Each subscription breaks (Unavailable) after `break_every` events,
// so a Subscribe handler has to resume after the last sequence it saw.
class MemoryLog : public EventLog {
 public:
  explicit MemoryLog(int break_every) : break_every_(break_every) {}

  using EventLog::AppendAsync;
  void AppendAsync(const Envelope& envelope, const std::string& msg_id,
                   AppendDone done) override {
    {
      absl::MutexLock lock(&mu_);
      events_.push_back(envelope);
    }
    done(absl::OkStatus());
  }

  absl::StatusOr<std::unique_ptr<EventSubscription>> Subscribe(StartPosition start) override {
    absl::MutexLock lock(&mu_);
    ++subscriptions_;
    uint64_t from = start.kind == StartPosition::Kind::kSequence
                        ? std::max<uint64_t>(start.sequence, 1)
                        : events_.size() + 1;
    return std::unique_ptr<EventSubscription>(new Subscription(this, from));
  }

  int subscriptions() {
    absl::MutexLock lock(&mu_);
    return subscriptions_;
  }

 private:
  class Subscription : public EventSubscription {
   public:
    Subscription(MemoryLog* log, uint64_t from) : log_(log), next_(from) {}
    absl::StatusOr<std::optional<StoredEvent>> Next(absl::Duration timeout) override {
      if (log_->break_every_ > 0 && delivered_ == log_->break_every_) {
        return absl::UnavailableError("memory log: broken on purpose");
      }
      absl::MutexLock lock(&log_->mu_);
      auto has_next = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(log_->mu_) {
        return next_ <= log_->events_.size();
      };
      if (!log_->mu_.AwaitWithTimeout(absl::Condition(&has_next), timeout)) {
        return std::optional<StoredEvent>();
      }
      StoredEvent event{next_, log_->events_[next_ - 1]};
      ++next_;
      ++delivered_;
      return std::optional<StoredEvent>(std::move(event));
    }
    int64_t buffered() const override {
      absl::MutexLock lock(&log_->mu_);
      return static_cast<int64_t>(log_->events_.size() + 1 - next_);
    }
    std::optional<uint64_t> resume_after() const override { return next_ - 1; }

   private:
    MemoryLog* log_;
    uint64_t next_;
    int delivered_ = 0;
  };

  const int break_every_;
  absl::Mutex mu_;
  std::vector<Envelope> events_ ABSL_GUARDED_BY(mu_);
  int subscriptions_ ABSL_GUARDED_BY(mu_) = 0;
};

// Both services over `log` on a unix socket in this process.
class InProcessEventd {
 public:
  InProcessEventd(EventLog& log, const std::string& socket)
      : containerd_(log, "default"), berth_(log, "default") {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
    builder.RegisterService(&containerd_);
    builder.RegisterService(&berth_);
    server_ = builder.BuildAndStart();
    channel_ = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  }
  ~InProcessEventd() { server_->Shutdown(std::chrono::system_clock::now()); }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  ContainerdEventsService containerd_;
  BerthEventsService berth_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// A berth.events.v1 Subscribe read on its own thread: the position marker and the items.
class Subscription {
 public:
  Subscription(std::shared_ptr<grpc::Channel> channel, bpb::SubscribeRequest request)
      : stub_(bpb::Events::NewStub(channel)) {
    thread_ = std::thread([this, request] {
      auto reader = stub_->Subscribe(&context_, request);
      bpb::StreamedEvent item;
      while (reader->Read(&item)) {
        absl::MutexLock lock(&mu_);
        if (!item.has_envelope()) {
          if (!marker_.has_value()) {
            marker_ = item.sequence();
          }
          continue;
        }
        items_.push_back(item);
      }
      reader->Finish();
    });
  }
  ~Subscription() {
    context_.TryCancel();
    thread_.join();
  }
  std::optional<uint64_t> marker() {
    absl::MutexLock lock(&mu_);
    return marker_;
  }
  std::vector<bpb::StreamedEvent> items() {
    absl::MutexLock lock(&mu_);
    return items_;
  }
  // Waits until an item with `topic` arrived: everything stored before it has been seen.
  bool WaitForTopic(const std::string& topic, absl::Duration timeout) {
    return WaitFor(
        [&] {
          absl::MutexLock lock(&mu_);
          return !items_.empty() && items_.back().envelope().topic() == topic;
        },
        timeout);
  }

 private:
  std::unique_ptr<bpb::Events::Stub> stub_;
  grpc::ClientContext context_;
  absl::Mutex mu_;
  std::optional<uint64_t> marker_ ABSL_GUARDED_BY(mu_);
  std::vector<bpb::StreamedEvent> items_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

bpb::SubscribeRequest FromSequence(uint64_t sequence) {
  bpb::SubscribeRequest request;
  request.set_start_sequence(sequence);
  return request;
}

// Sequences `from`..`to` each once, in order; envelopes with pids first_pid, first_pid + 1, ...
void ExpectContiguous(const std::vector<bpb::StreamedEvent>& items, uint64_t from, uint64_t to,
                      int first_pid) {
  ASSERT_EQ(items.size(), to - from + 1);
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_EQ(items[i].sequence(), from + i) << "at " << i;
    ASSERT_EQ(PidOf(items[i].envelope()), first_pid + static_cast<int>(i)) << "at " << i;
  }
}

// Subscribe's handler resumes after the last sequence it saw whenever the log's subscription
// breaks: with a break every 7 events, 100 events arrive once each, in order.
TEST(EventdServiceTest, SubscribeResumesAcrossBrokenLogSubscriptions) {
  TempDir dir;
  MemoryLog log(/*break_every=*/7);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(log.Append(EnvelopeOf(i)).ok());
  }
  InProcessEventd eventd(log, dir.Join("ev.sock"));
  Subscription sub(eventd.channel(), FromSequence(1));
  ASSERT_TRUE(WaitFor([&] { return sub.items().size() >= 100; }, absl::Seconds(20)))
      << sub.items().size();
  ASSERT_TRUE(log.Append(EnvelopeOf(100, kSentinelTopic)).ok());
  ASSERT_TRUE(sub.WaitForTopic(kSentinelTopic, absl::Seconds(20)));
  std::vector<bpb::StreamedEvent> items = sub.items();
  items.pop_back();  // the sentinel
  ExpectContiguous(items, 1, 100, 0);
  EXPECT_EQ(sub.marker(), std::optional<uint64_t>(0));
  EXPECT_GE(log.subscriptions(), 100 / 7);
}

class JetStreamServiceTest : public ::testing::Test {
 protected:
  void Open(int64_t max_bytes = 0) {
    JetStreamLogOptions options;
    options.url = nats_.url();
    options.stream.max_bytes = max_bytes;
    options.stream.memory_storage = true;
    absl::StatusOr<std::unique_ptr<JetStreamLog>> log = JetStreamLog::Open(options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
    eventd_ = std::make_unique<InProcessEventd>(*log_, dir_.Join("ev.sock"));
  }
  void AppendExits(int first, int count) {
    for (int i = first; i < first + count; ++i) {
      ASSERT_TRUE(log_->Append(EnvelopeOf(i)).ok());
    }
  }

  TempDir dir_;
  NatsServer nats_;
  std::unique_ptr<JetStreamLog> log_;
  std::unique_ptr<InProcessEventd> eventd_;
};

// Forward stores the envelope as given (namespace, topic, timestamp, event) and both
// Subscribes deliver it: containerd's live one and berth's replay.
TEST_F(JetStreamServiceTest, ForwardStoresAValidEnvelopeAndSubscribersGetIt) {
  Open();
  auto stub = cpb::Events::NewStub(eventd_->channel());
  grpc::ClientContext live_context;
  live_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  cpb::SubscribeRequest live_request;
  live_request.add_filters("topic==\"/tasks/exit\"");
  auto live = stub->Subscribe(&live_context, live_request);
  live->WaitForInitialMetadata();  // subscribed (eventd sends the headers once it is)

  Envelope sent = EnvelopeOf(42);
  sent.set_namespace_("forwarded");
  sent.mutable_timestamp()->set_nanos(123);
  grpc::ClientContext context;
  cpb::ForwardRequest request;
  *request.mutable_envelope() = sent;
  google::protobuf::Empty empty;
  grpc::Status status = stub->Forward(&context, request, &empty);
  ASSERT_TRUE(status.ok()) << status.error_message();

  cpb::Envelope got;
  ASSERT_TRUE(live->Read(&got));
  EXPECT_EQ(got.SerializeAsString(), sent.SerializeAsString()) << got.DebugString();
  live_context.TryCancel();
  live->Finish();

  Subscription replay(eventd_->channel(), FromSequence(1));
  ASSERT_TRUE(WaitFor([&] { return !replay.items().empty(); }, absl::Seconds(10)));
  EXPECT_EQ(replay.items()[0].sequence(), 1u);
  EXPECT_EQ(replay.items()[0].envelope().SerializeAsString(), sent.SerializeAsString());
}

// A replay from the start, subscribed while events keep being appended: the history and the
// live events meet with no gap and no duplicate.
TEST_F(JetStreamServiceTest, ReplayTurnsLiveWhileEventsArePublished) {
  Open();
  constexpr int kBefore = 300, kDuring = 1500;
  AppendExits(0, kBefore);
  std::atomic<int> appended{kBefore};
  std::thread appender([&] {
    for (int i = kBefore; i < kBefore + kDuring; ++i) {
      ASSERT_TRUE(log_->Append(EnvelopeOf(i)).ok());
      appended.store(i + 1);
    }
  });
  // Subscribe once the appender is well under way, so the replay catches up with it.
  ASSERT_TRUE(WaitFor([&] { return appended.load() >= kBefore + 100; }, absl::Seconds(20)));
  Subscription sub(eventd_->channel(), FromSequence(1));
  int at_subscribe = appended.load();
  appender.join();
  EXPECT_LT(at_subscribe, kBefore + kDuring) << "the appender finished before the replay began";
  ASSERT_TRUE(log_->Append(EnvelopeOf(kBefore + kDuring, kSentinelTopic)).ok());
  ASSERT_TRUE(sub.WaitForTopic(kSentinelTopic, absl::Seconds(30))) << sub.items().size();
  std::vector<bpb::StreamedEvent> items = sub.items();
  items.pop_back();
  ExpectContiguous(items, 1, kBefore + kDuring, 0);
}

// A start past the end of the history waits for that sequence: the marker says start - 1 and
// the first event delivered is the one numbered `start` (events before it are not sent).
TEST_F(JetStreamServiceTest, StartPastTheEndDeliversFromThatSequenceOn) {
  Open();
  AppendExits(0, 5);  // sequences 1..5
  Subscription sub(eventd_->channel(), FromSequence(8));
  ASSERT_TRUE(WaitFor([&] { return sub.marker().has_value(); }, absl::Seconds(10)));
  EXPECT_EQ(*sub.marker(), 7u);
  AppendExits(5, 5);  // sequences 6..10
  ASSERT_TRUE(log_->Append(EnvelopeOf(10, kSentinelTopic)).ok());  // 11
  ASSERT_TRUE(sub.WaitForTopic(kSentinelTopic, absl::Seconds(10)));
  std::vector<bpb::StreamedEvent> items = sub.items();
  items.pop_back();
  ExpectContiguous(items, 8, 10, 7);
}

// A start older than what the stream keeps (here its byte limit dropped the oldest events)
// begins at the oldest event kept: the marker says start - 1 and the first item's sequence
// shows where the history resumes, so the client can tell what it missed.
TEST_F(JetStreamServiceTest, StartOlderThanRetentionBeginsAtTheOldestEventKept) {
  Open(/*max_bytes=*/4096);
  AppendExits(0, 200);
  absl::StatusOr<uint64_t> last = log_->LastSequence();
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(*last, 200u);
  Subscription sub(eventd_->channel(), FromSequence(1));
  ASSERT_TRUE(log_->Append(EnvelopeOf(200, kSentinelTopic)).ok());
  ASSERT_TRUE(sub.WaitForTopic(kSentinelTopic, absl::Seconds(10)));
  EXPECT_EQ(sub.marker(), std::optional<uint64_t>(0));
  std::vector<bpb::StreamedEvent> items = sub.items();
  items.pop_back();
  ASSERT_FALSE(items.empty());
  uint64_t first = items.front().sequence();
  EXPECT_GT(first, 1u) << "the byte limit dropped nothing";
  ExpectContiguous(items, first, 200, static_cast<int>(first) - 1);
}

}  // namespace
}  // namespace berth::eventd
