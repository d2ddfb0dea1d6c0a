#include "lib/events/nats_publisher.h"

#include <nats/nats.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "containerd/services/events/v1/events.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace berth::events {
namespace {

// Append-only (sqlite.h): AUTOINCREMENT so a row id, and with it a Msg-Id, is never reused even
// after the outbox has been emptied.
const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      "CREATE TABLE outbox ("
      "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
      "  subject TEXT NOT NULL,"
      "  payload BLOB NOT NULL,"
      "  created_unix_nanos INTEGER NOT NULL);"
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
  };
  return *migrations;
}

absl::StatusOr<std::string> RandomId() {
  unsigned char bytes[12];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return absl::InternalError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// Reads the publisher id from the outbox, creating it on first use.
absl::StatusOr<std::string> LoadPublisherId(sqlite::Db& db) {
  std::string id;
  absl::Status st = db.Transaction([&]() -> absl::Status {
    absl::StatusOr<sqlite::Statement> select =
        db.Prepare("SELECT value FROM meta WHERE key = 'publisher_id'");
    if (!select.ok()) {
      return select.status();
    }
    absl::StatusOr<bool> row = select->Step();
    if (!row.ok()) {
      return row.status();
    }
    if (*row) {
      id = select->Text(0);
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> fresh = RandomId();
    if (!fresh.ok()) {
      return fresh.status();
    }
    id = *fresh;
    absl::StatusOr<sqlite::Statement> insert =
        db.Prepare("INSERT INTO meta (key, value) VALUES ('publisher_id', ?)");
    if (!insert.ok()) {
      return insert.status();
    }
    return insert->Bind(1, id).Run();
  });
  if (!st.ok()) {
    return st;
  }
  return id;
}

absl::StatusOr<int64_t> CountRows(sqlite::Db& db) {
  absl::StatusOr<sqlite::Statement> count = db.Prepare("SELECT COUNT(*) FROM outbox");
  if (!count.ok()) {
    return count.status();
  }
  absl::StatusOr<bool> row = count->Step();
  if (!row.ok()) {
    return row.status();
  }
  return count->Int(0);
}

absl::Status NatsError(natsStatus s, absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("nats ", what, ": ", natsStatus_GetText(s), " (", nats_GetLastError(nullptr),
                   ")"));
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

// Takes back (and drops) the asynchronous publishes still waiting for an acknowledgement.
void DiscardUnacknowledged(jsCtx* js) {
  natsMsgList pending;
  if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
    natsMsgList_Destroy(&pending);
  }
}

// NATS's default max_payload (1 MiB). Events are a few hundred bytes.
constexpr size_t kMaxEventBytes = 1 << 20;
// Rows one outbox transaction takes from the publishers queued behind it, at most.
constexpr size_t kMaxGroupCommit = 1024;

int64_t Backoff(absl::Duration min, absl::Duration max, int attempts) {
  absl::Duration d = min;
  for (int i = 1; i < attempts && d < max; ++i) {
    d *= 2;
  }
  return absl::ToInt64Milliseconds(std::min(d, max));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NatsPublisher>> NatsPublisher::Open(NatsPublisherOptions options) {
  if (options.outbox_path.empty()) {
    return absl::InvalidArgumentError("events outbox: no path given");
  }
  std::string user, password;
  if (!options.credentials.empty()) {
    std::pair<std::string, std::string> parts =
        absl::StrSplit(options.credentials, absl::MaxSplits(':', 1));
    if (options.credentials.find(':') == std::string::npos || parts.first.empty()) {
      return absl::InvalidArgumentError("nats credentials: want \"user:password\"");
    }
    user = parts.first;
    password = parts.second;
  }
  if (absl::Status st = ValidateNatsTls(options.tls, options.url); !st.ok()) {
    return st;
  }
  if (options.batch_size < 1) {
    options.batch_size = 1;
  }
  absl::StatusOr<std::unique_ptr<sqlite::Db>> db =
      sqlite::Db::Open(options.outbox_path, Migrations());
  if (!db.ok()) {
    return absl::Status(db.status().code(), absl::StrCat("events outbox ", options.outbox_path,
                                                         ": ", db.status().message()));
  }
  absl::StatusOr<std::string> id = LoadPublisherId(**db);
  if (!id.ok()) {
    return id.status();
  }
  absl::StatusOr<int64_t> pending = CountRows(**db);
  if (!pending.ok()) {
    return pending.status();
  }
  return std::unique_ptr<NatsPublisher>(new NatsPublisher(
      std::move(options), std::move(*db), std::move(*id), *pending, std::move(user),
      std::move(password)));
}

NatsPublisher::NatsPublisher(NatsPublisherOptions options, std::unique_ptr<sqlite::Db> db,
                             std::string publisher_id, int64_t pending, std::string user,
                             std::string password)
    : options_(std::move(options)),
      publisher_id_(std::move(publisher_id)),
      user_(std::move(user)),
      password_(std::move(password)),
      callback_id_(Register(this)),
      db_(std::move(db)) {
  if (options_.metrics != nullptr) {
    pending_gauge_ = &prometheus::BuildGauge()
                          .Name("berth_events_outbox_pending")
                          .Help("Events stored in the outbox and not yet confirmed by NATS.")
                          .Register(*options_.metrics)
                          .Add(options_.metric_labels);
  }
  {
    absl::MutexLock lock(&mu_);
    SetPendingLocked(pending);
  }
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

void NatsPublisher::SetPendingLocked(int64_t pending) {
  pending_ = pending;
  if (pending_gauge_ != nullptr) {
    pending_gauge_->Set(static_cast<double>(pending));
  }
}

int64_t NatsPublisher::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_;
}

int64_t NatsPublisher::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

bool NatsPublisher::WaitForDelivery(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](int64_t* pending) { return *pending == 0; }, &pending_),
                              timeout);
}

void NatsPublisher::Wake() {
  absl::MutexLock lock(&ack_mu_);
  wake_ = true;
}

absl::Status NatsPublisher::Publish(absl::string_view ns, absl::string_view topic,
                                    const google::protobuf::Message& event) {
  if (absl::Status st = ValidateNamespace(ns); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateTopic(topic); !st.ok()) {
    return st;
  }
  absl::Time now = absl::Now();
  int64_t nanos = absl::ToUnixNanos(now);
  containerd::services::events::v1::Envelope envelope;
  envelope.mutable_timestamp()->set_seconds(nanos / 1000000000);
  envelope.mutable_timestamp()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  envelope.set_namespace_(std::string(ns));
  envelope.set_topic(std::string(topic));
  envelope.mutable_event()->set_type_url(TypeUrlFor(event));
  if (!event.SerializeToString(envelope.mutable_event()->mutable_value())) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", event.GetDescriptor()->full_name(), ": cannot serialize"));
  }
  std::string payload;
  if (!envelope.SerializeToString(&payload)) {
    return absl::InternalError("event envelope: cannot serialize");
  }
  if (payload.size() > kMaxEventBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", event.GetDescriptor()->full_name(), ": ", payload.size(),
                     " bytes, more than NATS's default max_payload (", kMaxEventBytes, ")"));
  }
  Waiter waiter;
  waiter.subject = SubjectFor(ns, topic);
  waiter.payload = std::move(payload);
  waiter.nanos = nanos;
  return CommitInGroup(waiter);
}

// Group commit (after LevelDB's writer queue): every Publish queues its row; the one at the
// front commits everything queued so far in one transaction (one fsync), then hands the front to
// the next. Publishers that arrive during a commit form the next group, so the cost of an fsync
// is shared by as many events as arrive while it runs, and no Publish returns before its row is
// durable.
absl::Status NatsPublisher::CommitInGroup(Waiter& waiter) {
  struct Turn {
    NatsPublisher* self;
    Waiter* waiter;
  } turn{this, &waiter};
  write_mu_.Lock();
  writers_.push_back(&waiter);
  write_mu_.Await(absl::Condition(
      +[](Turn* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->self->write_mu_) {
        return t->waiter->done || t->self->writers_.front() == t->waiter;
      },
      &turn));
  if (waiter.done) {
    write_mu_.Unlock();
    return waiter.status;
  }
  size_t group = std::min(writers_.size(), kMaxGroupCommit);
  std::vector<Waiter*> batch(writers_.begin(), writers_.begin() + group);
  write_mu_.Unlock();

  absl::Status st;
  {
    absl::MutexLock lock(&mu_);
    st = db_->Transaction([&]() -> absl::Status {
      absl::StatusOr<sqlite::Statement> insert = db_->Prepare(
          "INSERT INTO outbox (subject, payload, created_unix_nanos) VALUES (?, ?, ?)");
      if (!insert.ok()) {
        return insert.status();
      }
      for (Waiter* w : batch) {
        if (absl::Status s = insert->Bind(1, w->subject).BindBlob(2, w->payload).Bind(3, w->nanos)
                                 .Run();
            !s.ok()) {
          return s;
        }
        insert->Reset();
      }
      return absl::OkStatus();
    });
    if (st.ok()) {
      SetPendingLocked(pending_ + static_cast<int64_t>(batch.size()));
    } else {
      st = absl::Status(st.code(), absl::StrCat("events outbox: ", st.message()));
    }
  }
  if (st.ok()) {
    Wake();
  }

  write_mu_.Lock();
  for (Waiter* w : batch) {
    if (writers_.front() != w) {  // only the front commits, and nobody else pops
      BERTH_LOG(Error) << "events outbox: group commit queue out of order";
      std::abort();
    }
    writers_.pop_front();
    w->status = st;
    w->done = true;
  }
  write_mu_.Unlock();
  return st;
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
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  void* closure = ClosureFor(callback_id_);
  if (s == NATS_OK) {
    s = natsOptions_SetURL(opts, options_.url.c_str());
  }
  if (s == NATS_OK && !options_.client_name.empty()) {
    s = natsOptions_SetName(opts, options_.client_name.c_str());
  }
  if (s == NATS_OK) {
    if (absl::Status st = ApplyNatsTls(opts, options_.url, options_.tls); !st.ok()) {
      natsOptions_Destroy(opts);
      return st;  // checked at Open; a file changed since
    }
  }
  if (s == NATS_OK && !user_.empty()) {
    s = natsOptions_SetUserInfo(opts, user_.c_str(), password_.c_str());
  }
  // No reconnects inside nats.c: it would keep what we published while the connection was
  // going down (still in its write buffer, or published before we noticed) and send it after
  // the reconnect, behind events the dying server never stored. Those are resent from the
  // outbox too, so the stream would store later events before earlier ones. A lost connection
  // is closed instead, and the sender thread opens a new one and resends from the oldest
  // unacknowledged row; on one connection the server stores what it stores in order.
  if (s == NATS_OK) {
    s = natsOptions_SetAllowReconnect(opts, false);
  }
  // Each publish is written at once: nats.c's flusher thread sleeps 1 ms before each flush,
  // which showed as ~0.8 ms more publish -> subscriber latency (bench/README.md), for no CPU
  // saved.
  if (s == NATS_OK) {
    s = natsOptions_SetSendAsap(opts, true);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(opts, &NatsPublisher::OnDisconnected, closure);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetClosedCB(opts, &NatsPublisher::OnClosed, closure);
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    return NatsError(s, "options");
  }
  natsConnection* conn = nullptr;
  s = natsConnection_Connect(&conn, opts);
  natsOptions_Destroy(opts);
  if (s == NATS_CONNECTION_AUTH_FAILED ||
      (s != NATS_OK && s != NATS_NO_SERVER &&
       absl::StrContains(absl::AsciiStrToLower(nats_GetLastError(nullptr)), "authorization"))) {
    if (conn != nullptr) {
      natsConnection_Destroy(conn);
    }
    std::string why = nats_GetLastError(nullptr);
    if (!credentials_refused_.exchange(true)) {
      BERTH_LOG(Error) << "events: NATS at " << options_.url << " refused "
                       << (user_.empty() ? std::string("a connection without credentials")
                                         : absl::StrCat("the credentials of user \"", user_, "\""))
                       << " (" << why << "); events are kept in the outbox until "
                       << "nats_credentials are fixed";
    }
    return absl::UnauthenticatedError(
        absl::StrCat("nats connect ", options_.url, ": credentials refused"));
  }
  if (s != NATS_OK) {
    if (conn != nullptr) {
      natsConnection_Destroy(conn);
    }
    // The sender thread tries again after a backoff (LogFailure says so once per streak).
    absl::Status st = NatsError(s, absl::StrCat("connect ", options_.url));
    return absl::Status(st.code(), ExplainNatsTlsFailure(std::string(st.message()),
                                                         options_.tls.Wanted(options_.url)));
  }
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
  s = natsConnection_JetStream(&js, conn, &js_options);
  if (s != NATS_OK) {
    natsConnection_Close(conn);
    natsConnection_Destroy(conn);
    connected_.store(false);
    return NatsError(s, "JetStream context");
  }
  conn_ = conn;
  js_ = js;
  published_async_ = false;
  return absl::OkStatus();
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

absl::StatusOr<std::vector<NatsPublisher::Row>> NatsPublisher::ReadBatch(int64_t after_id,
                                                                         int64_t limit) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> select =
      db_->Prepare("SELECT id, subject, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?");
  if (!select.ok()) {
    return select.status();
  }
  select->Bind(1, after_id).Bind(2, limit);
  std::vector<Row> rows;
  while (true) {
    absl::StatusOr<bool> row = select->Step();
    if (!row.ok()) {
      return row.status();
    }
    if (!*row) {
      break;
    }
    rows.push_back(Row{select->Int(0), select->Text(1), select->Text(2)});
  }
  return rows;
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
  std::string body(natsMsg_GetData(reply), static_cast<size_t>(natsMsg_GetDataLength(reply)));
  natsMsg_Destroy(reply);
  if (body.find("\"error\"") != std::string::npos) {
    return std::nullopt;
  }
  return body.find("\"streams\":[\"") != std::string::npos;
}

absl::Status NatsPublisher::DeleteThrough(int64_t last_id, int64_t rows, int64_t dropped) {
  absl::MutexLock lock(&mu_);
  // A delete needs no fsync of its own: if it is lost (power loss) the rows are sent again and
  // the stream drops them by Msg-Id. So it is committed with synchronous=NORMAL, and the next
  // insert's fsync (synchronous=FULL: the whole WAL) makes it durable too.
  if (absl::Status st = db_->Exec("PRAGMA synchronous=NORMAL"); !st.ok()) {
    return st;
  }
  absl::StatusOr<sqlite::Statement> del = db_->Prepare("DELETE FROM outbox WHERE id <= ?");
  absl::Status st = del.ok() ? del->Bind(1, last_id).Run() : del.status();
  absl::Status restore = db_->Exec("PRAGMA synchronous=FULL");
  if (!restore.ok()) {
    // Inserts must not be committed without an fsync: a broken invariant, not an outage.
    BERTH_LOG(Error) << "events outbox: cannot restore synchronous=FULL: " << restore;
    std::abort();
  }
  if (!st.ok()) {
    return st;
  }
  delivered_ += rows - dropped;
  SetPendingLocked(pending_ - rows);
  return absl::OkStatus();
}

void NatsPublisher::ResetPipeline() {
  // nats.c 3.4 crashes taking the pending list of a context that never published async.
  if (js_ != nullptr && published_async_) {
    DiscardUnacknowledged(js_);
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
  absl::StatusOr<std::vector<Row>> rows = ReadBatch(0, options_.batch_size);
  if (!rows.ok() || rows->empty()) {
    return rows.status();
  }
  int64_t dropped = 0;
  for (const Row& row : *rows) {
    std::string msg_id = absl::StrCat(publisher_id_, "-", row.id);
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
  if (absl::Status st =
          DeleteThrough(rows->back().id, static_cast<int64_t>(rows->size()), dropped);
      !st.ok()) {
    return st;
  }
  *progress = true;
  *more = rows->size() == static_cast<size_t>(options_.batch_size);
  return absl::OkStatus();
}

absl::Status NatsPublisher::SendStep(bool* more, bool* progress) {
  *more = false;
  if (recheck_stream_.exchange(false) || absl::Now() - stream_checked_ > absl::Seconds(5)) {
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
  }
  if (!use_jetstream_) {
    return SendPlainBatch(more, progress);
  }

  // 1. Take the acknowledged prefix of what is in flight; stop at the first error.
  int64_t acked_through = 0, acked_rows = 0, dropped = 0;
  int64_t room = 0;
  absl::Time oldest_unacked = absl::InfiniteFuture();
  int64_t failures = 0;
  std::string error;
  {
    absl::MutexLock lock(&ack_mu_);
    failures = ack_failures_;
    error = ack_error_;
    acks_unseen_ = 0;
    while (!in_flight_.empty() && in_flight_.front().acked) {
      acked_through = in_flight_.front().id;
      dropped += in_flight_.front().dropped ? 1 : 0;
      ++acked_rows;
      in_flight_.pop_front();
    }
    if (!in_flight_.empty()) {
      oldest_unacked = in_flight_.front().sent;
    }
    room = options_.max_in_flight - static_cast<int64_t>(in_flight_.size());
  }
  // 2. Delete it, in one statement.
  if (acked_rows > 0) {
    if (absl::Status st = DeleteThrough(acked_through, acked_rows, dropped); !st.ok()) {
      return st;
    }
    *progress = true;
  }
  if (failures > 0) {
    // Sent again with the next attempt; the stream drops what it already has (Msg-Id).
    ResetPipeline();
    return absl::UnavailableError(
        absl::StrCat("nats: the stream refused ", failures, " event(s): ", error));
  }
  if (absl::Now() - oldest_unacked > options_.flush_timeout) {
    ResetPipeline();
    return absl::UnavailableError(absl::StrCat("nats: the stream did not acknowledge within ",
                                               absl::FormatDuration(options_.flush_timeout)));
  }
  if (natsConnection_Status(conn_) != NATS_CONN_STATUS_CONNECTED) {
    return absl::OkStatus();  // its acknowledgements will never come; Run opens a new one
  }
  // 3. Send what is new, without waiting for earlier acknowledgements.
  if (room <= 0) {
    return absl::OkStatus();  // an acknowledgement wakes us
  }
  absl::StatusOr<std::vector<Row>> rows =
      ReadBatch(sent_through_, std::min<int64_t>(room, options_.batch_size));
  if (!rows.ok()) {
    return rows.status();
  }
  for (const Row& row : *rows) {
    std::string msg_id = absl::StrCat(publisher_id_, "-", row.id);
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
      sent_through_ = row.id;
      continue;
    }
    if (s != NATS_OK) {
      ResetPipeline();
      return NatsError(s, absl::StrCat("publish ", row.subject));
    }
    sent_through_ = row.id;
  }
  *more = rows->size() == static_cast<size_t>(std::min<int64_t>(room, options_.batch_size)) &&
          !rows->empty();
  return absl::OkStatus();
}

void NatsPublisher::Run() {
  int failures = 0;
  absl::Duration wait = absl::InfiniteDuration();
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
      jsCtx_Destroy(js_);
      js_ = nullptr;
      natsConnection_Destroy(conn_);
      conn_ = nullptr;
      LogFailure(absl::UnavailableError("nats connection closed"), &failures);
      wait = absl::Milliseconds(
          Backoff(options_.reconnect_wait_min, options_.reconnect_wait_max, failures));
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
        wait = absl::Milliseconds(
            Backoff(options_.reconnect_wait_min, options_.reconnect_wait_max, failures));
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
      }
    } else {
      // Retry on a timer: the connection may look fine while the server does not answer.
      // The stream may have gone (or come): look again before the next batch.
      recheck_stream_.store(true);
      LogFailure(st, &failures);
      wait = absl::Milliseconds(
          Backoff(options_.reconnect_wait_min, options_.reconnect_wait_max, failures));
    }
  }
}

void NatsPublisher::LogFailure(const absl::Status& st, int* failures) {
  if (*failures == 0) {
    BERTH_LOG(Warn) << "events: " << st.message() << "; " << pending()
                    << " event(s) kept in the outbox, retrying";
  }
  ++*failures;
}

}  // namespace berth::events
