#include "services/eventd/event_log.h"

#include <nats/nats.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "lib/base/logging.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"
#include "lib/events/nats_connection.h"
#include "lib/events/nats_publisher.h"

namespace berth::eventd {
namespace {

std::string LastNatsError(natsStatus s) { return events::NatsErrorText(s); }

int64_t Millis(absl::Duration d) { return std::max<int64_t>(1, absl::ToInt64Milliseconds(d)); }

// No closure: these may run on nats.c's callback thread after the log is gone.
void LogDisconnected(natsConnection* nc, void*) {
  BERTH_LOG(Warn) << "eventd: lost the connection to NATS; reconnecting";
}
void LogReconnected(natsConnection* nc, void*) {
  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  BERTH_LOG(Info) << "eventd: reconnected to NATS at " << url;
}

class JetStreamSubscription : public EventSubscription {
 public:
  JetStreamSubscription(natsSubscription* sub, std::optional<uint64_t> resume_after)
      : sub_(sub), resume_after_(resume_after) {}
  ~JetStreamSubscription() override {
    natsSubscription_Unsubscribe(sub_);  // deletes the ephemeral consumer
    natsSubscription_Destroy(sub_);
  }

  absl::StatusOr<std::optional<StoredEvent>> Next(absl::Duration timeout) override {
    absl::Time deadline = absl::Now() + timeout;
    while (true) {
      natsMsg* msg = nullptr;
      natsStatus s =
          natsSubscription_NextMsg(&msg, sub_, Millis(deadline - absl::Now()));
      if (s == NATS_TIMEOUT) {
        return std::optional<StoredEvent>();
      }
      if (s == NATS_SLOW_CONSUMER) {
        continue;  // the ordered consumer notices the gap and restarts after the last one
      }
      if (s != NATS_OK) {
        return absl::UnavailableError(absl::StrCat("event stream: ", LastNatsError(s)));
      }
      jsMsgMetaData* meta = nullptr;
      s = natsMsg_GetMetaData(&meta, msg);
      if (s != NATS_OK) {
        natsMsg_Destroy(msg);
        return absl::UnavailableError(absl::StrCat("event stream metadata: ", LastNatsError(s)));
      }
      StoredEvent event;
      event.sequence = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
      bool parsed = event.envelope.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
      if (!parsed) {
        BERTH_LOG(Warn) << "eventd: skipping stream message " << event.sequence << " on "
                        << natsMsg_GetSubject(msg) << ": not an events Envelope";
      }
      natsMsg_Destroy(msg);
      if (parsed) {
        return std::optional<StoredEvent>(std::move(event));
      }
      if (absl::Now() >= deadline) {
        return std::optional<StoredEvent>();
      }
    }
  }

  std::optional<uint64_t> resume_after() const override { return resume_after_; }

  int64_t buffered() const override {
    int msgs = 0, bytes = 0;
    if (natsSubscription_GetPending(sub_, &msgs, &bytes) != NATS_OK) {
      return 0;
    }
    return msgs;
  }

 private:
  natsSubscription* sub_;
  std::optional<uint64_t> resume_after_;
};

// Creates the stream, or brings an existing one's limits in line with `o`.
absl::Status EnsureStream(jsCtx* js, const StreamOptions& o) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = o.name.c_str();
  const char* subjects[] = {o.subjects.c_str()};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = o.memory_storage ? js_MemoryStorage : js_FileStorage;
  cfg.Retention = js_LimitsPolicy;
  cfg.Discard = js_DiscardOld;
  cfg.MaxAge = absl::ToInt64Nanoseconds(o.max_age);
  cfg.MaxBytes = o.max_bytes > 0 ? o.max_bytes : -1;
  cfg.Duplicates = absl::ToInt64Nanoseconds(o.duplicate_window);

  jsStreamInfo* info = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, js, o.name.c_str(), nullptr, &jerr);
  if (s == NATS_NO_RESPONDERS) {
    return absl::UnavailableError("NATS has JetStream disabled; eventd needs it (jetstream {} in "
                                  "nats-server.conf)");
  }
  const char* action = "update";
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(info);
    info = nullptr;
    s = js_UpdateStream(&info, js, &cfg, nullptr, &jerr);
  } else if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
    action = "create";
    s = js_AddStream(&info, js, &cfg, nullptr, &jerr);
  }
  if (s != NATS_OK) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot ", action, " JetStream stream ", o.name, " (subjects ", o.subjects,
        "): ", LastNatsError(s), jerr != 0 ? absl::StrCat(" (error code ", jerr, ")") : ""));
  }
  BERTH_LOG(Info) << "eventd: JetStream stream " << o.name << " (" << action << "d): subjects "
                  << o.subjects << ", " << info->State.Msgs << " events kept, sequences "
                  << info->State.FirstSeq << ".." << info->State.LastSeq << ", max age "
                  << o.max_age << ", max bytes " << cfg.MaxBytes << ", duplicate window "
                  << o.duplicate_window;
  jsStreamInfo_Destroy(info);
  return absl::OkStatus();
}

}  // namespace

// Appends in flight: each one registers its completion under its message before publishing
// it; nats.c's acknowledgement callback (on one thread, the async reply subscription's) takes
// it out and calls it.
class JetStreamLog::AckWaiters {
 public:
  void Register(natsMsg* msg, AppendDone done) {
    absl::MutexLock lock(&mu_);
    pending_[msg] = std::move(done);
  }
  // The publish failed and the caller kept `msg`: its completion, which was never called.
  AppendDone Take(natsMsg* msg) {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(msg);
    if (it == pending_.end()) {
      return nullptr;
    }
    AppendDone done = std::move(it->second);
    pending_.erase(it);
    return done;
  }

  // jsPubAckHandler: called once per published message, positive or not (server error,
  // no responders, or nats.c's own timeout after the publish's MaxWait).
  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr* err, void* closure) {
    AppendDone done = static_cast<AckWaiters*>(closure)->Take(msg);
    if (done != nullptr) {
      if (ack != nullptr) {
        done(absl::OkStatus());
      } else {
        natsStatus s = err != nullptr ? err->Err : NATS_ERR;
        std::string why = natsStatus_GetText(s);
        if (err != nullptr && err->ErrText != nullptr && why != err->ErrText) {
          absl::StrAppend(&why, ": ", err->ErrText);
        }
        if (err != nullptr && err->ErrCode != 0) {
          absl::StrAppend(&why, " (error code ", err->ErrCode, ")");
        }
        done(absl::UnavailableError(
            absl::StrCat("event bus: publish on ", natsMsg_GetSubject(msg), ": ", why)));
      }
    }
    natsMsg_Destroy(msg);  // ours once the callback runs
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<natsMsg*, AppendDone> pending_ ABSL_GUARDED_BY(mu_);
};

absl::Status EventLog::Append(const Envelope& envelope) {
  struct Outcome {
    absl::Notification done;
    absl::Status status;
  };
  auto outcome = std::make_shared<Outcome>();
  AppendAsync(envelope, [outcome](absl::Status st) {
    outcome->status = std::move(st);
    outcome->done.Notify();
  });
  outcome->done.WaitForNotification();
  return outcome->status;
}

namespace {

// Connects with `opts`, retrying for up to `timeout` while no server answers; any other
// failure (a refused login, TLS) is returned at once.
absl::StatusOr<natsConnection*> ConnectWaiting(natsOptions* opts,
                                               const events::NatsEndpoint& endpoint,
                                               absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  bool waiting_logged = false;
  while (true) {
    absl::StatusOr<natsConnection*> conn = events::ConnectNats(opts, endpoint);
    if (conn.ok() || !events::NatsNotReachable(conn.status()) || absl::Now() >= deadline) {
      return conn;
    }
    if (!waiting_logged) {
      BERTH_LOG(Warn) << "eventd: " << conn.status().message() << "; retrying for up to "
                      << timeout;
      waiting_logged = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<JetStreamLog>> JetStreamLog::Open(JetStreamLogOptions options) {
  if (options.url.empty()) {
    return absl::InvalidArgumentError("eventd needs a NATS server: set nats_url (--nats-url)");
  }
  events::NatsEndpoint endpoint{options.url, {}, options.tls, options.client_name};
  BERTH_ASSIGN_OR_RETURN(endpoint.credentials, events::ParseNatsCredentials(options.credentials));
  BERTH_ASSIGN_OR_RETURN(events::NatsOptionsPtr opts, events::NewNatsOptions(endpoint));
  natsStatus s = natsOptions_SetAllowReconnect(opts.get(), true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts.get(), -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts.get(), 250);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts.get(), &LogDisconnected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts.get(), &LogReconnected, nullptr);
  if (s != NATS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("nats options: ", LastNatsError(s)));
  }
  absl::StatusOr<natsConnection*> connected =
      ConnectWaiting(opts.get(), endpoint, options.connect_timeout);
  if (absl::IsUnauthenticated(connected.status())) {
    return absl::UnauthenticatedError(absl::StrCat(
        connected.status().message(), "; check nats_credentials / --nats-credentials"));
  }
  BERTH_RETURN_IF_ERROR(connected.status());
  natsConnection* conn = *connected;

  auto waiters = std::make_unique<AckWaiters>();
  jsCtx* js = nullptr;
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = Millis(options.publish_timeout);
  js_options.PublishAsync.MaxPending = std::max<int64_t>(1, options.max_in_flight);
  js_options.PublishAsync.StallWait = Millis(options.publish_timeout);
  js_options.PublishAsync.AckHandler = &AckWaiters::OnAck;
  js_options.PublishAsync.AckHandlerClosure = waiters.get();
  s = natsConnection_JetStream(&js, conn, &js_options);
  if (s != NATS_OK) {
    natsConnection_Destroy(conn);
    return absl::InternalError(absl::StrCat("nats JetStream context: ", LastNatsError(s)));
  }
  if (absl::Status st = EnsureStream(js, options.stream); !st.ok()) {
    jsCtx_Destroy(js);
    natsConnection_Close(conn);
    natsConnection_Destroy(conn);
    return st;
  }
  return std::unique_ptr<JetStreamLog>(
      new JetStreamLog(std::move(options), conn, js, std::move(waiters), RandomHex(8)));
}

JetStreamLog::JetStreamLog(JetStreamLogOptions options, natsConnection* conn, jsCtx* js,
                           std::unique_ptr<AckWaiters> waiters, std::string instance_id)
    : options_(std::move(options)),
      waiters_(std::move(waiters)),
      conn_(conn),
      js_(js),
      instance_id_(std::move(instance_id)) {}

JetStreamLog::~JetStreamLog() {
  // Every publish is acknowledged or timed out (MaxWait) by then, and each callback has
  // returned, so none runs against a freed waiters_.
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = Millis(options_.publish_timeout + absl::Seconds(1));
  js_PublishAsyncComplete(js_, &wait);
  jsCtx_Destroy(js_);
  natsConnection_Close(conn_);
  natsConnection_Destroy(conn_);
}

void JetStreamLog::AppendAsync(const Envelope& envelope, const std::string& given_msg_id,
                               AppendDone done) {
  if (natsConnection_Status(conn_) != NATS_CONN_STATUS_CONNECTED) {
    // A publish now would sit in the reconnect buffer with no one to confirm it.
    done(absl::UnavailableError(
        absl::StrCat("event bus: not connected to NATS at ", options_.url)));
    return;
  }
  std::string payload;
  if (!envelope.SerializeToString(&payload)) {
    done(absl::InternalError("event envelope: cannot serialize"));
    return;
  }
  std::string subject = events::SubjectFor(envelope.namespace_(), envelope.topic());
  std::string msg_id = !given_msg_id.empty()
                           ? given_msg_id
                           : absl::StrCat("eventd-", instance_id_, "-", next_msg_.fetch_add(1));
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(),
                                static_cast<int>(payload.size()));
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(msg, events::kMsgIdHeader, msg_id.c_str());
  }
  if (s == NATS_OK) {
    jsPubOptions pub;
    jsPubOptions_Init(&pub);
    pub.MaxWait = Millis(options_.publish_timeout);  // nats.c reports a missing ack as a timeout
    pub.ExpectStream = options_.stream.name.c_str();
    natsMsg* sent = msg;
    waiters_->Register(sent, std::move(done));  // before publishing: the ack may beat us back
    s = js_PublishMsgAsync(js_, &msg, &pub);  // on success nats.c owns it and clears `msg`
    if (s != NATS_OK) {
      done = waiters_->Take(sent);  // still ours: nats.c neither sent it nor acknowledged it
    }
  }
  natsMsg_Destroy(msg);
  if (s == NATS_OK || done == nullptr) {
    return;
  }
  if (s == NATS_MAX_PAYLOAD) {
    done(absl::InvalidArgumentError(absl::StrCat("event on ", envelope.topic(), ": ",
                                                 payload.size(), " bytes, over NATS's limit")));
    return;
  }
  done(absl::UnavailableError(
      absl::StrCat("event bus: publish on ", subject, ": ", LastNatsError(s))));
}

bool JetStreamLog::connected() const {
  return natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED;
}

absl::StatusOr<uint64_t> JetStreamLog::LastSequence() {
  jsStreamInfo* info = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, js_, options_.stream.name.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat("event stream ", options_.stream.name, ": ",
                                               LastNatsError(s)));
  }
  uint64_t last = info->State.LastSeq;
  jsStreamInfo_Destroy(info);
  return last;
}

absl::StatusOr<uint64_t> JetStreamLog::FirstSequenceAtOrAfter(absl::Time time) {
  jsStreamInfo* info = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, js_, options_.stream.name.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat("event stream ", options_.stream.name, ": ",
                                               LastNatsError(s)));
  }
  uint64_t lo = std::max<uint64_t>(info->State.FirstSeq, 1);
  uint64_t hi = info->State.LastSeq + 1;  // answer in [lo, hi]; hi: nothing stored at/after
  jsStreamInfo_Destroy(info);
  int64_t want = absl::ToUnixNanos(time);
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    natsMsg* msg = nullptr;
    s = js_GetMsg(&msg, js_, options_.stream.name.c_str(), mid, nullptr, &jerr);
    if (s == NATS_NOT_FOUND) {
      lo = mid + 1;  // removed (aged out or deleted): look later
      continue;
    }
    if (s != NATS_OK) {
      return absl::UnavailableError(absl::StrCat("event stream ", options_.stream.name,
                                                 " message ", mid, ": ", LastNatsError(s)));
    }
    int64_t stored = natsMsg_GetTime(msg);
    natsMsg_Destroy(msg);
    if (stored >= want) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

absl::StatusOr<std::unique_ptr<EventSubscription>> JetStreamLog::Subscribe(StartPosition start) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = options_.stream.name.c_str();
  so.Ordered = true;
  std::optional<uint64_t> resume_after;
  switch (start.kind) {
    case StartPosition::Kind::kLive: {
      // Not DeliverNew: starting after the last sequence we read lets us tell the client
      // where it stands before any event arrives, with no race between the two.
      absl::StatusOr<uint64_t> last = LastSequence();
      if (!last.ok()) {
        return last.status();
      }
      resume_after = *last;
      break;
    }
    case StartPosition::Kind::kSequence:
      resume_after = std::max<uint64_t>(start.sequence, 1) - 1;
      break;
    case StartPosition::Kind::kTime: {
      // Resolved to a sequence here (a binary search over stored timestamps, which only grow),
      // so every start is a sequence and the reader learns where it stands.
      absl::StatusOr<uint64_t> first = FirstSequenceAtOrAfter(start.time);
      if (!first.ok()) {
        return first.status();
      }
      resume_after = *first - 1;
      break;
    }
  }
  if (resume_after.has_value()) {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = *resume_after + 1;
  }
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&sub, js_, options_.stream.subjects.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat("subscribe to event stream ",
                                               options_.stream.name, ": ", LastNatsError(s)));
  }
  return std::unique_ptr<EventSubscription>(new JetStreamSubscription(sub, resume_after));
}

}  // namespace berth::eventd
