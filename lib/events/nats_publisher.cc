#include "lib/events/nats_publisher.h"

#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "containerd/services/events/v1/events.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace berth::events {
namespace {

absl::Status NatsError(natsStatus s, absl::string_view what) {
  return absl::UnavailableError(absl::StrCat("nats ", what, ": ", NatsErrorText(s)));
}

// nats.c callbacks look the publisher up here by id, under the table's lock, so a late
// callback never touches a destroyed publisher.
absl::Mutex registry_mu(absl::kConstInit);
std::map<uint64_t, NatsPublisher*>* registry ABSL_GUARDED_BY(registry_mu) = nullptr;
uint64_t next_callback_id ABSL_GUARDED_BY(registry_mu) = 1;

uint64_t Register(NatsPublisher* p) {
  absl::MutexLock lock(&registry_mu);
  if (registry == nullptr) {
    registry = new std::map<uint64_t, NatsPublisher*>();
  }
  uint64_t id = next_callback_id++;
  (*registry)[id] = p;
  return id;
}

void Unregister(uint64_t id) {
  absl::MutexLock lock(&registry_mu);
  registry->erase(id);
}

void* ClosureFor(uint64_t id) { return reinterpret_cast<void*>(static_cast<uintptr_t>(id)); }
uint64_t IdOf(void* closure) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(closure)); }

// Holds registry_mu while `f` runs, so the publisher cannot be unregistered (and destroyed)
// in between; `f` must be quick and must not call back into nats.c.
template <typename F>
void WithPublisher(void* closure, F f) {
  absl::MutexLock lock(&registry_mu);
  if (registry == nullptr) {
    return;
  }
  auto it = registry->find(IdOf(closure));
  if (it != registry->end()) {
    f(it->second);
  }
}

absl::Duration Backoff(absl::Duration min, absl::Duration max, int attempts) {
  absl::Duration d = min;
  for (int i = 1; i < attempts && d < max; ++i) {
    d *= 2;
  }
  return std::min(d, max);
}

}  // namespace

absl::StatusOr<std::unique_ptr<NatsPublisher>> NatsPublisher::Open(NatsPublisherOptions options) {
  if (options.outbox_path.empty()) {
    return absl::InvalidArgumentError("events outbox: no path given");
  }
  NatsEndpoint endpoint{options.url, {}, options.tls, options.client_name};
  BERTH_ASSIGN_OR_RETURN(endpoint.credentials, ParseNatsCredentials(options.credentials));
  BERTH_RETURN_IF_ERROR(ValidateNatsTls(options.tls, options.url));
  options.batch_size = std::max(options.batch_size, 1);
  prometheus::Gauge* gauge = nullptr;
  if (options.metrics != nullptr) {
    gauge = &prometheus::BuildGauge()
                 .Name("berth_events_outbox_pending")
                 .Help("Events stored in the outbox and not yet confirmed by NATS.")
                 .Register(*options.metrics)
                 .Add(options.metric_labels);
  }
  Outbox::PendingObserver observe;
  if (gauge != nullptr) {
    observe = [gauge](int64_t pending) { gauge->Set(static_cast<double>(pending)); };
  }
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Outbox> outbox,
                         Outbox::Open(options.outbox_path, std::move(observe)));
  return std::unique_ptr<NatsPublisher>(
      new NatsPublisher(std::move(options), std::move(endpoint), std::move(outbox)));
}

NatsPublisher::NatsPublisher(NatsPublisherOptions options, NatsEndpoint endpoint,
                             std::unique_ptr<Outbox> outbox)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      outbox_(std::move(outbox)),
      callback_id_(Register(this)) {
  Wake();  // drain what a previous run left behind
  sender_ = std::thread([this] { Run(); });
}

NatsPublisher::~NatsPublisher() {
  Unregister(callback_id_);
  {
    absl::MutexLock lock(&ack_mu_);
    stop_ = true;
  }
  sender_.join();
  DropConnection();
}

int64_t NatsPublisher::pending() const { return outbox_->pending(); }

int64_t NatsPublisher::delivered() const { return outbox_->delivered(); }

bool NatsPublisher::WaitForDelivery(absl::Duration timeout) {
  return outbox_->WaitForEmpty(timeout);
}

void NatsPublisher::Wake() {
  absl::MutexLock lock(&ack_mu_);
  wake_ = true;
}

absl::Status NatsPublisher::Publish(absl::string_view ns, absl::string_view topic,
                                    const google::protobuf::Message& event) {
  return PublishOnce(ns, topic, event, "");
}

absl::Status NatsPublisher::Forget(absl::string_view key) { return outbox_->Forget(key); }

absl::Status NatsPublisher::PublishOnce(absl::string_view ns, absl::string_view topic,
                                        const google::protobuf::Message& event,
                                        absl::string_view key) {
  absl::Time now = absl::Now();
  BERTH_ASSIGN_OR_RETURN(std::string payload, OutboxPayload(ns, topic, event, now));
  BERTH_RETURN_IF_ERROR(outbox_->Append(SubjectFor(ns, topic), std::move(payload),
                                        absl::ToUnixNanos(now), std::string(key)));
  Wake();
  return absl::OkStatus();
}

void NatsPublisher::OnDisconnected(natsConnection* nc, void* closure) {
  WithPublisher(closure, [](NatsPublisher* p) {
    if (p->connected_.exchange(false)) {
      BERTH_LOG(Warn) << "events: lost the connection to NATS at " << p->options_.url
                      << "; events are kept in the outbox until it is back";
    }
  });
}

void NatsPublisher::OnClosed(natsConnection* nc, void* closure) {
  OnDisconnected(nc, closure);
  WithPublisher(closure, [](NatsPublisher* p) { p->Wake(); });  // to open a new connection
}

absl::Status NatsPublisher::Connect() {
  void* closure = ClosureFor(callback_id_);
  // Checked at Open; an error here is a TLS file that changed since.
  BERTH_ASSIGN_OR_RETURN(NatsOptionsPtr opts, NewNatsOptions(endpoint_));
  // No reconnects inside nats.c: it would keep what we published while the connection was
  // going down (still in its write buffer, or published before we noticed) and send it after
  // the reconnect, behind events the dying server never stored. Those are resent from the
  // outbox too, so the stream would store later events before earlier ones. A lost connection
  // is closed instead, and the sender thread opens a new one and resends from the oldest
  // unacknowledged row; on one connection the server stores what it stores in order.
  natsStatus s = natsOptions_SetAllowReconnect(opts.get(), false);
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(opts.get(), &NatsPublisher::OnDisconnected, closure);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetClosedCB(opts.get(), &NatsPublisher::OnClosed, closure);
  }
  if (s != NATS_OK) {
    return NatsError(s, "options");
  }
  absl::StatusOr<natsConnection*> conn = ConnectNats(opts.get(), endpoint_);
  if (absl::IsUnauthenticated(conn.status())) {
    if (!credentials_refused_.exchange(true)) {
      BERTH_LOG(Error) << "events: " << conn.status().message()
                       << "; events are kept in the outbox until nats_credentials are fixed";
    }
    return conn.status();
  }
  // Otherwise the sender thread tries again after a backoff (LogFailure says so once per
  // streak), TLS failures included: a certificate may be replaced while the daemon runs.
  BERTH_RETURN_IF_ERROR(conn.status());
  credentials_refused_.store(false);
  if (!connected_.exchange(true)) {
    BERTH_LOG(Info) << "events: connected to NATS at " << options_.url;
  }
  recheck_stream_.store(true);
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.PublishAsync.AckHandler = &NatsPublisher::OnPublishAck;
  js_options.PublishAsync.AckHandlerClosure = closure;
  // Room above our own limit (max_in_flight), so nats.c never stalls a publish itself.
  js_options.PublishAsync.MaxPending = std::max(options_.max_in_flight, 1) + 16;
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, *conn, &js_options);
  if (s != NATS_OK) {
    natsConnection_Close(*conn);
    natsConnection_Destroy(*conn);
    connected_.store(false);
    return NatsError(s, "JetStream context");
  }
  conn_ = *conn;
  js_ = js;
  published_async_ = false;
  return absl::OkStatus();
}

void NatsPublisher::DropConnection() {
  if (js_ != nullptr) {
    jsCtx_Destroy(js_);
    js_ = nullptr;
  }
  if (conn_ != nullptr) {
    natsConnection_Close(conn_);
    natsConnection_Destroy(conn_);
    conn_ = nullptr;
  }
}

namespace {
// The row id a message carries in its Msg-Id ("<publisher id>-<row id>"); 0 if none.
int64_t RowIdOf(natsMsg* msg) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, kMsgIdHeader, &value) != NATS_OK || value == nullptr) {
    return 0;
  }
  const char* dash = std::strrchr(value, '-');
  return dash == nullptr ? 0 : std::strtoll(dash + 1, nullptr, 10);
}

// An outbox row's message with its Msg-Id header; *msg is the caller's even on error.
natsStatus NewEventMsg(const std::string& subject, const std::string& payload,
                       const std::string& msg_id, natsMsg** msg) {
  natsStatus s = natsMsg_Create(msg, subject.c_str(), nullptr, payload.data(),
                                static_cast<int>(payload.size()));
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(*msg, kMsgIdHeader, msg_id.c_str());
  }
  return s;
}

// An event that is over the server's max_payload; the outbox drops it.
void LogDropped(const std::string& msg_id, const std::string& subject, size_t bytes) {
  BERTH_LOG(Error) << "events: dropping event " << msg_id << " on " << subject << ": " << bytes
                   << " bytes exceed the server's max_payload";
}
}  // namespace

void NatsPublisher::OnPublishAck(jsCtx* js, natsMsg* msg, jsPubAck* ack, jsPubAckErr* err,
                                 void* closure) {
  int64_t id = RowIdOf(msg);
  WithPublisher(closure, [&](NatsPublisher* p) {
    absl::MutexLock lock(&p->ack_mu_);
    // Every error keeps the event in the outbox, "no responders" included: we only publish
    // through JetStream once a stream captured the subject, so no responder means the stream is
    // not there right now (nats-server stops JetStream before it closes client connections, and
    // publishes in between are answered so), not that nothing will ever store the event.
    if (err != nullptr) {
      ++p->ack_failures_;
      if (p->ack_error_.empty()) {
        const char* status = natsStatus_GetText(err->Err);
        p->ack_error_ = status;
        if (err->ErrText != nullptr && std::strcmp(err->ErrText, status) != 0) {
          absl::StrAppend(&p->ack_error_, ": ", err->ErrText);
        }
      }
      return;
    }
    // An ack for a row no longer in flight (sent before a reset and since resent or deleted)
    // finds nothing: the stream has it, and its copy is dropped as a duplicate.
    auto it = std::lower_bound(p->in_flight_.begin(), p->in_flight_.end(), id,
                               [](const InFlight& f, int64_t v) { return f.id < v; });
    if (it != p->in_flight_.end() && it->id == id && !it->acked) {
      it->acked = true;
      --p->unacked_;
      ++p->acks_unseen_;
    }
  });
  natsMsg_Destroy(msg);
}

std::optional<bool> NatsPublisher::StreamCapturesEvents() {
  // $JS.API.STREAM.NAMES with a subject lists the streams whose subjects overlap it. Answered by
  // the server itself, so (unlike a publish) it cannot be mistaken for a core subscriber's
  // silence. nullopt when there is no clear answer (no JetStream, or not ready yet after a
  // restart, or an error reply).
  natsMsg* reply = nullptr;
  natsStatus s = natsConnection_RequestString(&reply, conn_, "$JS.API.STREAM.NAMES",
                                              "{\"subject\":\"berth.events.>\"}", 2000);
  if (s != NATS_OK) {
    return std::nullopt;
  }
  nlohmann::json body = nlohmann::json::parse(
      natsMsg_GetData(reply), natsMsg_GetData(reply) + natsMsg_GetDataLength(reply),
      /*cb=*/nullptr, /*allow_exceptions=*/false);
  natsMsg_Destroy(reply);
  // {"streams":["BERTH_EVENTS"],...}; "streams":null when none; an "error" object otherwise.
  if (!body.is_object() || body.contains("error")) {
    return std::nullopt;
  }
  auto streams = body.find("streams");
  return streams != body.end() && streams->is_array() && !streams->empty();
}

void NatsPublisher::ResetPipeline() {
  // nats.c 3.4 crashes taking the pending list of a context that never published async.
  natsMsgList unacknowledged;  // taken back from nats.c, and dropped
  if (js_ != nullptr && published_async_ &&
      js_PublishAsyncGetPendingList(&unacknowledged, js_) == NATS_OK) {
    natsMsgList_Destroy(&unacknowledged);
  }
  absl::MutexLock lock(&ack_mu_);
  in_flight_.clear();
  unacked_ = 0;
  acks_unseen_ = 0;
  ack_failures_ = 0;
  ack_error_.clear();
  sent_through_ = 0;  // everything still in the outbox goes out again, oldest first
}

absl::Status NatsPublisher::SendPlainBatch(bool* more, bool* progress) {
  BERTH_ASSIGN_OR_RETURN(std::vector<OutboxRow> rows,
                         outbox_->ReadAfter(0, options_.batch_size));
  if (rows.empty()) {
    return absl::OkStatus();
  }
  int64_t dropped = 0;
  for (const OutboxRow& row : rows) {
    std::string msg_id = absl::StrCat(publisher_id(), "-", row.id);
    natsMsg* msg = nullptr;
    natsStatus s = NewEventMsg(row.subject, row.payload, msg_id, &msg);
    if (s == NATS_OK) {
      s = natsConnection_PublishMsg(conn_, msg);
    }
    natsMsg_Destroy(msg);
    if (s == NATS_MAX_PAYLOAD) {
      LogDropped(msg_id, row.subject, row.payload.size());
      ++dropped;
      continue;
    }
    if (s != NATS_OK) {
      return NatsError(s, absl::StrCat("publish ", row.subject));
    }
  }
  natsStatus s = natsConnection_FlushTimeout(
      conn_, std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.flush_timeout)));
  if (s != NATS_OK) {
    return NatsError(s, "flush");
  }
  BERTH_RETURN_IF_ERROR(
      outbox_->DeleteThrough(rows.back().id, static_cast<int64_t>(rows.size()), dropped));
  *progress = true;
  *more = rows.size() == static_cast<size_t>(options_.batch_size);
  return absl::OkStatus();
}

absl::Status NatsPublisher::CheckStream() {
  if (!recheck_stream_.exchange(false) && absl::Now() - stream_checked_ <= absl::Seconds(5)) {
    return absl::OkStatus();
  }
  std::optional<bool> answer = StreamCapturesEvents();
  if (use_jetstream_ && answer != std::optional<bool>(true)) {
    // Once a stream has captured our events, never fall back to plain (unstored) publishes:
    // neither on a non-answer (a restarted server still restoring its streams) nor on "no
    // stream" (the server stopping JetStream before it drops us, or the stream being
    // recreated). Its absence is an outage of the history; the events wait in the outbox.
    recheck_stream_.store(true);
    return absl::UnavailableError(
        answer.has_value()
            ? "nats: no JetStream stream captures berth.events.> any more; waiting for it"
            : "nats: JetStream did not answer; retrying");
  }
  bool found = answer.value_or(false);
  if (found != use_jetstream_ || stream_checked_ == absl::InfinitePast()) {
    BERTH_LOG(Info) << "events: "
                    << (found ? "a JetStream stream captures berth.events.>; each event waits "
                                "for the stream's acknowledgement"
                              : "no JetStream stream captures berth.events.>; events are "
                                "published without history");
  }
  if (found != use_jetstream_) {
    ResetPipeline();
  }
  use_jetstream_ = found;
  stream_checked_ = absl::Now();
  return absl::OkStatus();
}

NatsPublisher::Settled NatsPublisher::TakeAcknowledged() {
  Settled settled;
  absl::MutexLock lock(&ack_mu_);
  settled.failures = ack_failures_;
  settled.error = ack_error_;
  acks_unseen_ = 0;
  while (!in_flight_.empty() && in_flight_.front().acked) {
    settled.through = in_flight_.front().id;
    settled.dropped += in_flight_.front().dropped ? 1 : 0;
    ++settled.rows;
    in_flight_.pop_front();
  }
  if (!in_flight_.empty()) {
    settled.oldest_unacked = in_flight_.front().sent;
  }
  settled.room = options_.max_in_flight - static_cast<int64_t>(in_flight_.size());
  return settled;
}

absl::Status NatsPublisher::SendNewRows(int64_t room, bool* more) {
  int64_t limit = std::min<int64_t>(room, options_.batch_size);
  BERTH_ASSIGN_OR_RETURN(std::vector<OutboxRow> rows, outbox_->ReadAfter(sent_through_, limit));
  for (const OutboxRow& row : rows) {
    std::string msg_id = absl::StrCat(publisher_id(), "-", row.id);
    natsMsg* msg = nullptr;
    natsStatus s = NewEventMsg(row.subject, row.payload, msg_id, &msg);
    if (s == NATS_OK) {
      // Registered first: the acknowledgement may come back before js_PublishMsgAsync returns.
      absl::MutexLock lock(&ack_mu_);
      in_flight_.push_back(InFlight{row.id, absl::Now()});
      ++unacked_;
    }
    if (s == NATS_OK) {
      s = js_PublishMsgAsync(js_, &msg, nullptr);  // on success it owns msg
      published_async_ = true;
    }
    natsMsg_Destroy(msg);
    if (s == NATS_MAX_PAYLOAD) {
      // It can never be delivered; keeping it would block every event behind it.
      LogDropped(msg_id, row.subject, row.payload.size());
      absl::MutexLock lock(&ack_mu_);
      InFlight& last = in_flight_.back();
      last.acked = last.dropped = true;
      --unacked_;
      ++acks_unseen_;
    } else if (s != NATS_OK) {
      ResetPipeline();
      return NatsError(s, absl::StrCat("publish ", row.subject));
    }
    sent_through_ = row.id;
  }
  *more = !rows.empty() && rows.size() == static_cast<size_t>(limit);
  return absl::OkStatus();
}

absl::Status NatsPublisher::SendStep(bool* more, bool* progress) {
  *more = false;
  BERTH_RETURN_IF_ERROR(CheckStream());
  if (!use_jetstream_) {
    return SendPlainBatch(more, progress);
  }
  Settled settled = TakeAcknowledged();
  if (settled.rows > 0) {
    BERTH_RETURN_IF_ERROR(outbox_->DeleteThrough(settled.through, settled.rows, settled.dropped));
    *progress = true;
  }
  if (settled.failures > 0) {
    // Sent again with the next attempt; the stream drops what it already has (Msg-Id).
    ResetPipeline();
    return absl::UnavailableError(absl::StrCat("nats: the stream refused ", settled.failures,
                                               " event(s): ", settled.error));
  }
  if (absl::Now() - settled.oldest_unacked > options_.flush_timeout) {
    ResetPipeline();
    return absl::UnavailableError(absl::StrCat("nats: the stream did not acknowledge within ",
                                               absl::FormatDuration(options_.flush_timeout)));
  }
  if (natsConnection_Status(conn_) != NATS_CONN_STATUS_CONNECTED) {
    return absl::OkStatus();  // its acknowledgements will never come; Run opens a new one
  }
  if (settled.room <= 0) {
    return absl::OkStatus();  // an acknowledgement wakes us
  }
  return SendNewRows(settled.room, more);
}

void NatsPublisher::Run() {
  int failures = 0;
  absl::Duration wait = absl::InfiniteDuration();
  auto backoff = [&] {
    return Backoff(options_.reconnect_wait_min, options_.reconnect_wait_max, failures);
  };
  // Acknowledgements wake the sender in groups (or when the last one in flight arrives), so it
  // does not wake once per event just to delete rows.
  constexpr int64_t kAckWakeGroup = 256;
  while (true) {
    {
      absl::MutexLock lock(&ack_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ack_mu_) {
        return wake_ || stop_ || ack_failures_ > 0 ||
               (acks_unseen_ > 0 && (unacked_ == 0 || acks_unseen_ >= kAckWakeGroup));
      };
      // While publishes are in flight, look at least every 100 ms: the connection may have
      // closed (their acknowledgements will never come), or they may be overdue.
      if (!in_flight_.empty()) {
        wait = std::min(wait, absl::Milliseconds(100));
      }
      ack_mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
      if (stop_) {
        return;
      }
      wake_ = false;
    }
    wait = absl::InfiniteDuration();
    if (options_.url.empty()) {
      continue;  // store only
    }
    if (conn_ != nullptr && natsConnection_Status(conn_) == NATS_CONN_STATUS_CLOSED) {
      // nats.c gave up on this connection; open a new one after a backoff.
      ResetPipeline();
      DropConnection();
      LogFailure(absl::UnavailableError("nats connection closed"), &failures);
      wait = backoff();
      continue;
    }
    absl::Status st;
    if (conn_ == nullptr) {
      st = Connect();
    }
    // Publish only on a live connection. One that is going down is closed by nats.c (no
    // reconnects, see Connect), and the closed callback wakes us to open a new one.
    if (!st.ok() || natsConnection_Status(conn_) != NATS_CONN_STATUS_CONNECTED) {
      if (!st.ok()) {
        LogFailure(st, &failures);
        wait = backoff();
      }
      continue;
    }
    bool more = true;
    bool progress = false;  // events confirmed and deleted: the bus works again
    while (st.ok() && more) {
      {
        absl::MutexLock lock(&ack_mu_);
        if (stop_) {
          return;
        }
      }
      st = SendStep(&more, &progress);
    }
    if (st.ok()) {
      if (failures > 0 && progress) {
        BERTH_LOG(Info) << "events: delivering to " << options_.url << " again";
        failures = 0;
        absl::MutexLock lock(&failure_mu_);
        last_failure_ = absl::OkStatus();
      }
    } else {
      // Retry on a timer: the connection may look fine while the server does not answer.
      // The stream may have gone (or come): look again before the next batch.
      recheck_stream_.store(true);
      LogFailure(st, &failures);
      wait = backoff();
    }
  }
}

absl::Status NatsPublisher::last_failure() const {
  absl::MutexLock lock(&failure_mu_);
  return last_failure_;
}

void NatsPublisher::LogFailure(const absl::Status& st, int* failures) {
  {
    absl::MutexLock lock(&failure_mu_);
    last_failure_ = st;
  }
  if (*failures == 0) {
    BERTH_LOG(Warn) << "events: " << st.message() << "; " << pending()
                    << " event(s) kept in the outbox, retrying";
  }
  ++*failures;
}

}  // namespace berth::events
