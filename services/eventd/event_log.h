#pragma once

// eventd's core: the event history, and the one implementation of it, a NATS JetStream stream
// over berth's subjects (DESIGN.md, Events). The gRPC servers (events_service.h) see only
// EventLog. Events travel as containerd's Envelope message: it is the payload on the bus, so
// converting it to a struct of our own and back would buy nothing.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "containerd/services/events/v1/events.pb.h"
#include "lib/events/nats_tls.h"

struct __natsConnection;
struct __jsCtx;
struct __natsMsg;

namespace berth::eventd {

using Envelope = ::containerd::services::events::v1::Envelope;

// An event as stored: its position in the history and the envelope.
struct StoredEvent {
  uint64_t sequence = 0;
  Envelope envelope;
};

// Where a subscription starts. Live: the first event stored after Subscribe returns.
struct StartPosition {
  enum class Kind { kLive, kSequence, kTime };
  Kind kind = Kind::kLive;
  uint64_t sequence = 0;  // kSequence: the first sequence delivered (0 is taken as 1)
  absl::Time time;        // kTime: the first event stored at or after it

  static StartPosition Live() { return {}; }
  static StartPosition AtSequence(uint64_t seq) { return {Kind::kSequence, seq, {}}; }
  static StartPosition AtTime(absl::Time t) { return {Kind::kTime, 0, t}; }
};

// One reader of the history, from its start position on, in stream order, without gaps or
// duplicates (also across a bus reconnect). Not thread-safe: one thread reads it.
class EventSubscription {
 public:
  virtual ~EventSubscription() = default;
  // The next event; nullopt when none arrived within `timeout`. Unavailable when the
  // subscription broke (the caller subscribes again from its last sequence + 1).
  virtual absl::StatusOr<std::optional<StoredEvent>> Next(absl::Duration timeout) = 0;
  // How many events have arrived and wait to be read: Next returns at once while this is > 0.
  // A reader uses it to hand a burst on in one batch.
  virtual int64_t buffered() const = 0;
  // The sequence just before the first event this subscription can deliver, so a reader that
  // has received nothing yet knows where to resume.
  virtual std::optional<uint64_t> resume_after() const = 0;
};

class EventLog {
 public:
  using AppendDone = std::function<void(absl::Status)>;

  virtual ~EventLog() = default;
  // Stores the envelope (already validated by the caller) on its subject and calls `done`
  // once with the outcome: OK means it is in the history; Unavailable when the bus is
  // unreachable or did not confirm in time. `done` may run before AppendAsync returns or on
  // another thread (the bus client's), so it must be quick and must not block. Thread-safe.
  // `msg_id`: the event's identity for deduplication (Nats-Msg-Id): the stream drops an event
  // whose id it stored within its duplicate window. Empty: the log makes a fresh one.
  virtual void AppendAsync(const Envelope& envelope, const std::string& msg_id,
                           AppendDone done) = 0;
  void AppendAsync(const Envelope& envelope, AppendDone done) {
    AppendAsync(envelope, std::string(), std::move(done));
  }
  // AppendAsync, waiting for the outcome.
  absl::Status Append(const Envelope& envelope);
  // Thread-safe. Unavailable when the bus is unreachable.
  virtual absl::StatusOr<std::unique_ptr<EventSubscription>> Subscribe(StartPosition start) = 0;
};

struct StreamOptions {
  std::string name = "BERTH_EVENTS";
  std::string subjects = "berth.events.>";
  absl::Duration max_age = absl::Hours(24 * 7);  // zero: unlimited
  int64_t max_bytes = int64_t{1} << 30;          // <= 0: unlimited
  // Messages with a Nats-Msg-Id seen within this window are dropped as duplicates: it must
  // cover a publisher's resend after a reconnect.
  absl::Duration duplicate_window = absl::Minutes(5);
  bool memory_storage = false;  // file storage by default
};

struct JetStreamLogOptions {
  std::string url;          // nats://host:port[,...], required
  std::string credentials;  // "user:password" or empty
  events::NatsTls tls;      // TLS to the server (lib/events/nats_tls.h)
  std::string client_name = "eventd";
  StreamOptions stream;
  // How long Open keeps trying while no server answers (a refused login fails at once).
  absl::Duration connect_timeout = absl::Seconds(30);
  // How long Append waits for the stream's acknowledgement.
  absl::Duration publish_timeout = absl::Seconds(5);
  // Appends sent to the stream and not yet acknowledged, at most; a further Append waits for
  // room (up to publish_timeout).
  int64_t max_in_flight = 8192;
};

// The EventLog on NATS JetStream. Open connects, creates the stream or updates its limits to
// the options, and keeps reconnecting for as long as the object lives. Each subscription is an
// ordered ephemeral consumer, which the client library re-creates at the right sequence after a
// reconnect.
//
// Appends are pipelined: each one is published asynchronously (js_PublishMsgAsync) and
// completes when that message's own acknowledgement arrives, so concurrent Appends share the
// connection's write batches and the stream's store round trips instead of taking turns, and
// no thread waits per event. The durability promise is unchanged: an Append completes with OK
// only once JetStream has stored the event.
class JetStreamLog : public EventLog {
 public:
  // Errors: InvalidArgument for malformed options or credentials; Unauthenticated when the
  // server refuses the credentials (the message names the user and the server);
  // InvalidArgument also for a TLS file that cannot be read or loaded; FailedPrecondition when
  // the TLS handshake fails (the server's certificate is not trusted or not for this name, or
  // the server wants a client certificate) or the server offers no TLS and TLS was asked for;
  // Unavailable when no server answered within connect_timeout or JetStream is off;
  // FailedPrecondition when the stream cannot be created or updated (the server's reason).
  static absl::StatusOr<std::unique_ptr<JetStreamLog>> Open(JetStreamLogOptions options);
  ~JetStreamLog() override;
  JetStreamLog(const JetStreamLog&) = delete;
  JetStreamLog& operator=(const JetStreamLog&) = delete;

  using EventLog::AppendAsync;
  void AppendAsync(const Envelope& envelope, const std::string& msg_id,
                   AppendDone done) override;
  absl::StatusOr<std::unique_ptr<EventSubscription>> Subscribe(StartPosition start) override;

  // Whether the connection to NATS is up right now. Thread-safe.
  bool connected() const;
  // The stream's last sequence (0 when empty).
  absl::StatusOr<uint64_t> LastSequence();
  // The first sequence stored at or after `time` (LastSequence() + 1 when none is).
  absl::StatusOr<uint64_t> FirstSequenceAtOrAfter(absl::Time time);

 private:
  class AckWaiters;  // Appends waiting for their acknowledgement, keyed by message

  JetStreamLog(JetStreamLogOptions options, __natsConnection* conn, __jsCtx* js,
               std::unique_ptr<AckWaiters> waiters, std::string instance_id);

  const JetStreamLogOptions options_;
  // The acknowledgement callback's closure; the destructor waits for every callback before
  // members go.
  std::unique_ptr<AckWaiters> waiters_;
  __natsConnection* conn_;
  __jsCtx* js_;
  const std::string instance_id_;  // Msg-Ids are "eventd-<instance_id>-<counter>"
  std::atomic<uint64_t> next_msg_ = {1};
};

}  // namespace berth::eventd
