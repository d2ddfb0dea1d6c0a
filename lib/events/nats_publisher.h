#pragma once

// NatsPublisher: the Publisher every daemon uses. Publish() stores the event in a sqlite outbox
// and returns; a sender thread drains the outbox to NATS in order, deleting each row only after
// the server confirmed it. When a JetStream stream captures berth.events.> (eventd's), events
// are JetStream publishes and the confirmation is the stream's acknowledgement that it stored
// them (checked at each connect, after a failure and every 5 s); otherwise they are plain
// publishes confirmed by a PING/PONG flush. JetStream publishes are pipelined: the sender keeps
// up to max_in_flight events sent and unacknowledged, sends each newly committed row at once,
// and deletes the acknowledged prefix of the outbox in one statement as acknowledgements
// arrive. Once a stream has been seen, events are never published plainly again: any JetStream
// error, "no responders" included (nats-server answers so while it stops JetStream before
// dropping its clients), or the stream being gone keeps them in the outbox. So an event
// survives NATS being down, restarting, or this process dying; delivery is at-least-once, and
// every message carries the header
// `Nats-Msg-Id: <publisher id>-<outbox row id>` so JetStream (eventd's stream) drops the copies
// that a crash between "sent" and "deleted" can cause. Row ids are never reused (AUTOINCREMENT)
// and the publisher id is random and kept in the outbox, so a Msg-Id names one event forever.

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/events/nats_connection.h"
#include "lib/events/outbox.h"
#include "lib/events/publisher.h"

struct __natsConnection;
struct __natsMsg;
struct __jsCtx;
struct jsPubAck;
struct jsPubAckErr;

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace berth::events {

// The header JetStream deduplicates on.
inline constexpr char kMsgIdHeader[] = "Nats-Msg-Id";

struct NatsPublisherOptions {
  // The outbox database file, e.g. <root>/events-outbox.db. Created when missing. Required.
  std::string outbox_path;
  // NATS server URL(s), comma-separated ("nats://127.0.0.1:4222"). Empty: events are only stored
  // (they go out once a publisher with a URL opens the same outbox).
  std::string url;
  // "user:password", or empty for no authentication.
  std::string credentials;
  // TLS to the server (nats_tls.h): off unless the URL is tls:// or a file is set.
  NatsTls tls;
  // The client name the server shows (connz).
  std::string client_name = "berth";
  // When set, the gauge berth_events_outbox_pending{metric_labels} is registered there. Two
  // publishers on one registry need different labels (e.g. {"daemon", "contentd"}).
  std::shared_ptr<prometheus::Registry> metrics;
  std::map<std::string, std::string> metric_labels;
  // Reconnect backoff: doubles from min up to max between connection attempts (the sender
  // thread reconnects; the client library's own reconnect is off).
  absl::Duration reconnect_wait_min = absl::Milliseconds(100);
  absl::Duration reconnect_wait_max = absl::Seconds(5);
  // How long the server has to confirm an event (JetStream) or a batch (plain publishes) before
  // it is sent again later.
  absl::Duration flush_timeout = absl::Seconds(5);
  // Rows read from the outbox and sent at a time; plain publishes wait for one PING/PONG per
  // batch.
  int batch_size = 256;
  // JetStream publishes sent and not yet acknowledged, at most.
  int max_in_flight = 4096;
};

// The outbox payload of `event` (nats_payload.cc): its Envelope stamped `now`, serialized.
// InvalidArgument for a bad namespace or topic or an envelope over NATS's 1 MiB max_payload.
absl::StatusOr<std::string> OutboxPayload(absl::string_view ns, absl::string_view topic,
                                          const google::protobuf::Message& event, absl::Time now);

// One NatsPublisher per outbox file at a time (two would send the same rows twice).
class NatsPublisher : public Publisher {
 public:
  // Opens (or creates) the outbox and starts the sender thread. Never waits for NATS: a server
  // that is down or refuses us only delays delivery. Errors: the outbox cannot be opened
  // (Internal / FailedPrecondition), malformed credentials or TLS settings (InvalidArgument).
  static absl::StatusOr<std::unique_ptr<NatsPublisher>> Open(NatsPublisherOptions options);

  // Stops the sender thread (waiting at most for a step in progress) and closes the connection.
  // Undelivered events stay in the outbox, unacknowledged ones included (sent again later and
  // dropped by the stream as duplicates if it had them).
  ~NatsPublisher() override;
  NatsPublisher(const NatsPublisher&) = delete;
  NatsPublisher& operator=(const NatsPublisher&) = delete;

  // Wraps `event` in an Envelope (timestamp now, ns, topic, Any) and commits it to the outbox;
  // OK means it is on disk (fsync) and reaches the bus even if this process dies next.
  // InvalidArgument for a bad namespace (containerd identifier rule), topic ("/a/b": leading
  // slash, identifier components) or an envelope over 1 MiB. Thread-safe.
  absl::Status Publish(absl::string_view ns, absl::string_view topic,
                       const google::protobuf::Message& event) override;
  // The key is stored with the event in one outbox transaction (Outbox::Append).
  absl::Status PublishOnce(absl::string_view ns, absl::string_view topic,
                           const google::protobuf::Message& event,
                           absl::string_view key) override;
  absl::Status Forget(absl::string_view key) override;
  // All in one outbox transaction (Outbox::AppendAll): one fsync; all stored or none.
  absl::Status PublishAll(
      absl::string_view ns,
      const std::vector<std::pair<std::string, const google::protobuf::Message*>>& events)
      override;

  // Events stored and not yet confirmed by the server. Thread-safe.
  int64_t pending() const;
  // Events confirmed by the server since Open. Thread-safe.
  int64_t delivered() const;
  // Whether the NATS connection is up right now (as last reported by the client library).
  bool connected() const { return connected_.load(); }
  // Whether the server refused our credentials on the last attempt (logged as an error once
  // per refusal streak; events stay in the outbox).
  bool credentials_refused() const { return credentials_refused_.load(); }
  // Why the last delivery attempt failed (connecting, publishing, the stream missing); OK
  // before any failure and again once events are delivered. Thread-safe.
  absl::Status last_failure() const;
  // The random id kept in the outbox; Msg-Ids are "<publisher_id>-<row id>".
  const std::string& publisher_id() const { return outbox_->publisher_id(); }
  // Waits until the outbox is empty (true) or `timeout` passes (false). For graceful shutdown
  // and tests. Thread-safe.
  bool WaitForDelivery(absl::Duration timeout);

 private:
  NatsPublisher(NatsPublisherOptions options, NatsEndpoint endpoint,
                std::unique_ptr<Outbox> outbox);

  // nats.c callbacks reach the publisher through a process-wide table keyed by callback_id_, so a
  // callback that fires after destruction finds nothing instead of a dangling pointer.
  static void OnDisconnected(__natsConnection* nc, void* closure);
  static void OnClosed(__natsConnection* nc, void* closure);
  static void OnPublishAck(__jsCtx* js, __natsMsg* msg, jsPubAck* ack, jsPubAckErr* err,
                           void* closure);

  // A JetStream publish sent and not yet deleted from the outbox, in send order (ids grow).
  struct InFlight {
    int64_t id;
    absl::Time sent;
    bool acked = false;
    bool dropped = false;  // never sendable (over max_payload): deleted without delivery
  };
  // What the acknowledgements so far settle (TakeAcknowledged).
  struct Settled {
    int64_t through = 0;  // the last row of the acknowledged prefix (0: none)
    int64_t rows = 0;     // rows in that prefix
    int64_t dropped = 0;  // of which never delivered
    int64_t room = 0;     // publishes that may still be sent before max_in_flight
    absl::Time oldest_unacked = absl::InfiniteFuture();
    int64_t failures = 0;  // publishes the stream refused
    std::string error;     // the first refusal's reason
  };

  void Wake();
  void Run();                 // the sender thread
  absl::Status Connect();     // sender thread: creates conn_ and js_
  void DropConnection();      // sender thread: forgets conn_ and js_
  // Sender thread, one round of delivery: checks the stream when due, then either one plain
  // batch or (JetStream) deletes the acknowledged prefix and sends rows not sent yet. *more:
  // call again without waiting (more rows are ready); *progress set when events were
  // confirmed and deleted.
  absl::Status SendStep(bool* more, bool* progress);
  // Asks the server whether a stream captures our subjects, when due; Unavailable while a
  // stream we used is missing or silent (events then wait in the outbox).
  absl::Status CheckStream();
  // No stream: one batch out, flushed, deleted.
  absl::Status SendPlainBatch(bool* more, bool* progress);
  // JetStream: takes the acknowledged prefix off in_flight_ and the errors seen.
  Settled TakeAcknowledged();
  // JetStream: sends up to `room` rows after sent_through_, registering each as in flight.
  absl::Status SendNewRows(int64_t room, bool* more);
  // Sender thread: forgets what is in flight; the next step resends from the oldest row left.
  void ResetPipeline();
  std::optional<bool> StreamCapturesEvents();  // sender thread: asks the server
  void LogFailure(const absl::Status& st, int* failures);

  const NatsPublisherOptions options_;
  const NatsEndpoint endpoint_;
  const std::unique_ptr<Outbox> outbox_;
  const uint64_t callback_id_;

  std::atomic<bool> connected_{false};
  std::atomic<bool> credentials_refused_{false};
  mutable absl::Mutex failure_mu_;
  absl::Status last_failure_ ABSL_GUARDED_BY(failure_mu_);
  __natsConnection* conn_ = nullptr;  // only the sender thread (and the destructor after join)
  __jsCtx* js_ = nullptr;             // on conn_, same owner
  bool use_jetstream_ = false;        // sender thread
  bool published_async_ = false;      // sender thread: js_ has published asynchronously
  absl::Time stream_checked_ = absl::InfinitePast();  // sender thread
  std::atomic<bool> recheck_stream_{true};

  // What wakes the sender thread: rows committed, a stop, or acknowledgements (written by
  // nats.c's callback thread). Taken inside the callback table's lock; the outbox's lock is never
  // taken while holding it.
  absl::Mutex ack_mu_;
  bool wake_ ABSL_GUARDED_BY(ack_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(ack_mu_) = false;
  std::deque<InFlight> in_flight_ ABSL_GUARDED_BY(ack_mu_);
  int64_t unacked_ ABSL_GUARDED_BY(ack_mu_) = 0;       // entries of in_flight_ not acked
  int64_t acks_unseen_ ABSL_GUARDED_BY(ack_mu_) = 0;   // acks since the sender last looked
  int64_t ack_failures_ ABSL_GUARDED_BY(ack_mu_) = 0;
  std::string ack_error_ ABSL_GUARDED_BY(ack_mu_);
  // Sender thread only: the highest row id sent on this connection (rows after it are new).
  int64_t sent_through_ = 0;
  std::thread sender_;
};

}  // namespace berth::events
