#include "services/eventd/events_service.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "lib/base/grpc_status.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/events/publisher.h"
#include "lib/server/request_context.h"
#include "services/eventd/envelope_filter.h"

namespace berth::eventd {
namespace {

namespace cpb = ::containerd::services::events::v1;
namespace bpb = ::berth::events::v1;

// How often a waiting handler checks whether its client went away.
constexpr absl::Duration kPollInterval = absl::Milliseconds(200);

// How many events a handler takes from its subscription before writing them out, at most.
constexpr int64_t kMaxBatch = 256;

// Streams the log from `start` to `emit` until the client cancels or `emit` fails, resuming
// after the last sequence seen whenever the log's subscription breaks. `marker` gets the
// resume point once, before any event, when the first subscription knows it. Events that have
// already arrived are taken as one batch and emitted with `more` set on all but the last, so a
// burst goes out in a few writes instead of one wake-up and one write per event.
grpc::Status Pump(grpc::ServerContext* context, EventLog& log, StartPosition start,
                  const filters::Filter& filter,
                  const std::function<bool(uint64_t)>& marker,
                  const std::function<bool(const StoredEvent&, bool more)>& emit) {
  std::optional<uint64_t> last;  // the last sequence handled (sent or filtered out)
  bool marker_sent = false;
  absl::Duration backoff = absl::Milliseconds(100);
  std::vector<StoredEvent> batch;
  while (!context->IsCancelled()) {
    StartPosition from = last.has_value() ? StartPosition::AtSequence(*last + 1) : start;
    absl::StatusOr<std::unique_ptr<EventSubscription>> sub = log.Subscribe(from);
    if (!sub.ok()) {
      if (!marker_sent && !last.has_value()) {
        return ToGrpcStatus(sub.status());  // nothing streamed yet: tell the client now
      }
      BERTH_LOG(Warn) << "eventd: resubscribing after sequence " << last.value_or(0) << ": "
                      << sub.status();
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
      continue;
    }
    if (!last.has_value() && (*sub)->resume_after().has_value()) {
      last = (*sub)->resume_after();
      if (!marker_sent) {
        marker_sent = true;
        if (!marker(*last)) {
          return grpc::Status::OK;  // the client went away
        }
      }
    }
    marker_sent = true;
    bool broken = false;
    while (!broken && !context->IsCancelled()) {
      batch.clear();
      absl::Duration wait = kPollInterval;
      do {
        absl::StatusOr<std::optional<StoredEvent>> next = (*sub)->Next(wait);
        if (!next.ok()) {
          BERTH_LOG(Warn) << "eventd: subscription broke after sequence " << last.value_or(0)
                          << ": " << next.status() << "; resubscribing";
          broken = true;
          break;
        }
        if (!next->has_value()) {
          break;
        }
        StoredEvent& event = **next;
        if (last.has_value() && event.sequence <= *last) {
          continue;  // never twice, whatever the consumer does
        }
        last = event.sequence;
        if (MatchEnvelope(filter, event.envelope)) {
          batch.push_back(std::move(event));
        }
        wait = absl::Milliseconds(1);  // only what is already there joins the batch
      } while (static_cast<int64_t>(batch.size()) < kMaxBatch && (*sub)->buffered() > 0);
      if (!batch.empty()) {
        backoff = absl::Milliseconds(100);
      }
      // Events taken before the subscription broke are still sent: `last` already covers them.
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!emit(batch[i], i + 1 < batch.size())) {
          return grpc::Status::OK;  // the client went away
        }
      }
    }
  }
  return grpc::Status::OK;
}

// A write that gRPC may hold back until the next one when `more` follow.
grpc::WriteOptions WriteOptionsFor(bool more) {
  grpc::WriteOptions options;
  if (more) {
    options.set_buffer_hint();
  }
  return options;
}

// The request's namespace, by server::ContextFrom's rule (callback handlers too).
absl::StatusOr<std::string> NamespaceFrom(const grpc::CallbackServerContext& context,
                                          absl::string_view default_ns) {
  absl::StatusOr<Context> ctx = server::ContextFrom(context, default_ns);
  if (!ctx.ok()) {
    return ctx.status();
  }
  return ctx->ns;
}

// Appends `envelope` and finishes the call with the outcome, when the log has it.
grpc::ServerUnaryReactor* AppendAndFinish(grpc::CallbackServerContext* context, EventLog& log,
                                          const Envelope& envelope) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  log.AppendAsync(envelope, [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* context,
                                   const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status ValidateTopicOf(absl::string_view topic) {
  if (absl::Status st = events::ValidateTopic(topic); !st.ok()) {
    return absl::InvalidArgumentError(st.message());
  }
  return absl::OkStatus();
}

// One berth.events.v1 Publish call (the contract is in events.proto). Events are appended as
// they are read; each append settles on the log's thread; `through` is the settled-OK prefix.
//
// Threads: gRPC's reactions, the log's callbacks. State changes under mu_; the gRPC operations
// (StartRead, StartWrite, Finish) are started by one thread at a time, outside mu_ (Kick), so a
// reaction that gRPC runs inline never finds mu_ held. The object goes when gRPC is done with
// it (OnDone) and every append's callback has returned (refs_).
class StreamPublisher : public grpc::ServerBidiReactor<bpb::PublishRequest, bpb::PublishAck> {
 public:
  StreamPublisher(EventLog& log, std::string ns, absl::Status ns_status, int64_t max_in_flight)
      : log_(log), ns_(std::move(ns)), max_in_flight_(max_in_flight), error_(ns_status) {
    Kick();  // reads the first request, or finishes at once on a bad namespace
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mu_);
      read_closed_ = true;  // half-closed (or gone): finish once everything has settled
      reading_ = false;
    } else {
      if (absl::Status producer = TakeProducer(); !producer.ok()) {
        absl::MutexLock lock(&mu_);
        if (error_.ok()) {
          error_ = producer;
        }
      }
      for (const cpb::PublishRequest& event : request_.events()) {
        absl::StatusOr<Envelope> envelope = EnvelopeForPublish(ns_, event);
        uint64_t index = 0;
        {
          absl::MutexLock lock(&mu_);
          if (!error_.ok()) {
            break;  // nothing after an error is appended
          }
          if (!envelope.ok()) {
            error_ = absl::Status(envelope.status().code(),
                                  absl::StrCat("event ", accepted_ + 1, ": ",
                                               envelope.status().message()));
            break;
          }
          index = ++accepted_;
          ++in_flight_;
          ++refs_;
          window_.push_back(Settlement::kPending);
        }
        std::string msg_id =
            producer_.empty()
                ? std::string()
                : absl::StrCat("producer-", producer_, "-", first_sequence_ + index - 1);
        log_.AppendAsync(*envelope, msg_id,
                         [this, index](absl::Status st) { Settled(index, st); });
      }
      absl::MutexLock lock(&mu_);
      reading_ = false;
    }
    Kick();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        write_broken_ = true;
        if (error_.ok()) {
          error_ = absl::CancelledError("publish: the client stopped reading acknowledgements");
        }
      }
    }
    Kick();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      if (error_.ok()) {
        error_ = absl::CancelledError("publish: cancelled by the client");
      }
    }
    Kick();
  }

  void OnDone() override { Unref(); }

 private:
  enum class Settlement : char { kPending, kStored, kFailed };

  // The first request names the producer (optional); later ones may not. Only OnReadDone
  // calls it, one read at a time.
  absl::Status TakeProducer() {
    bool first = !read_any_;
    read_any_ = true;
    const std::string& name = request_.producer();
    if (!first) {
      if (!name.empty() || request_.first_sequence() != 0) {
        return absl::InvalidArgumentError(
            "publish: producer and first_sequence go on the call's first request only");
      }
      return absl::OkStatus();
    }
    if (name.empty()) {
      if (request_.first_sequence() != 0) {
        return absl::InvalidArgumentError("publish: first_sequence needs a producer");
      }
      return absl::OkStatus();
    }
    bool valid = name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
                   return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                          c == '_' || c == '-';
                 });
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "publish: producer \"", name, "\": want 1 to 64 of A-Z a-z 0-9 . _ -"));
    }
    producer_ = name;
    first_sequence_ = std::max<uint64_t>(request_.first_sequence(), 1);
    return absl::OkStatus();
  }

  // An append's outcome: `through` moves over the stored prefix; the first failure ends the call.
  void Settled(uint64_t index, const absl::Status& st) {
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      window_[index - through_ - 1] = st.ok() ? Settlement::kStored : Settlement::kFailed;
      while (!window_.empty() && window_.front() == Settlement::kStored) {
        window_.pop_front();
        ++through_;
      }
      if (!st.ok() && error_.ok()) {
        error_ = absl::Status(st.code(), absl::StrCat("event ", index, ": ", st.message()));
      }
    }
    Kick();
    Unref();
  }

  // Starts whatever the state calls for: the next read (room in flight, no error, not closed),
  // an ack (through grew), or the end (everything settled and acknowledged).
  void Kick() {
    mu_.Lock();
    if (kicking_) {
      mu_.Unlock();
      return;  // the thread kicking now decides again after its operations, under mu_
    }
    kicking_ = true;
    while (true) {
      bool read = false, write = false, finish = false;
      grpc::Status status;
      if (!finished_ && !reading_ && !read_closed_ && error_.ok() && in_flight_ < max_in_flight_) {
        reading_ = read = true;
      }
      if (!finished_ && !writing_ && !write_broken_ && through_ > acked_) {
        writing_ = write = true;
        acked_ = through_;
        ack_.set_through(through_);
      }
      if (!finished_ && !writing_ && in_flight_ == 0 && (read_closed_ || !error_.ok()) &&
          (through_ == acked_ || write_broken_)) {
        finished_ = finish = true;
        status = ToGrpcStatus(error_);
      }
      if (!read && !write && !finish) {
        break;
      }
      mu_.Unlock();
      if (read) {
        StartRead(&request_);
      }
      if (write) {
        StartWrite(&ack_);
      }
      if (finish) {
        Finish(status);
      }
      mu_.Lock();
    }
    kicking_ = false;
    mu_.Unlock();
  }

  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) {
      delete this;
    }
  }

  EventLog& log_;
  const std::string ns_;
  const int64_t max_in_flight_;
  bpb::PublishRequest request_;  // the read in progress fills it; only OnReadDone reads it
  // OnReadDone's own (one read at a time): whether a request was read, and the producer.
  bool read_any_ = false;
  std::string producer_;
  uint64_t first_sequence_ = 1;
  bpb::PublishAck ack_;          // the write in progress sends it

  absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);  // the first error: it ends the call
  uint64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;  // events handed to the log
  uint64_t through_ ABSL_GUARDED_BY(mu_) = 0;   // events 1..through_ are stored
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;     // the last `through` sent
  // Settlements of events through_ + 1 .. accepted_.
  std::deque<Settlement> window_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refs_ ABSL_GUARDED_BY(mu_) = 1;  // gRPC's (until OnDone) + one per append
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool kicking_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::Status ValidateEnvelope(const Envelope& envelope) {
  if (absl::Status st = ValidateNamespace(envelope.namespace_()); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("event envelope has invalid namespace: ", st.message()));
  }
  if (absl::Status st = ValidateTopicOf(envelope.topic()); !st.ok()) {
    return st;
  }
  if (!envelope.has_timestamp() ||
      (envelope.timestamp().seconds() == 0 && envelope.timestamp().nanos() == 0)) {
    return absl::InvalidArgumentError("timestamp must be set on forwarded event");
  }
  return absl::OkStatus();
}

absl::StatusOr<Envelope> EnvelopeForPublish(std::string ns, const cpb::PublishRequest& request) {
  if (absl::Status st = ValidateTopicOf(request.topic()); !st.ok()) {
    return st;
  }
  if (!request.has_event() || request.event().type_url().empty()) {
    return absl::InvalidArgumentError("publish: an event (Any with a type) is required");
  }
  return events::MakeEnvelope(ns, request.topic(), request.event(), absl::Now());
}

ContainerdEventsService::ContainerdEventsService(EventLog& log, std::string default_namespace)
    : log_(log), default_namespace_(std::move(default_namespace)) {}

grpc::ServerUnaryReactor* ContainerdEventsService::Publish(grpc::CallbackServerContext* context,
                                                          const cpb::PublishRequest* request,
                                                          google::protobuf::Empty* response) {
  absl::StatusOr<std::string> ns = NamespaceFrom(*context, default_namespace_);
  if (!ns.ok()) {
    return Finished(context, ns.status());
  }
  absl::StatusOr<Envelope> envelope = EnvelopeForPublish(*std::move(ns), *request);
  if (!envelope.ok()) {
    return Finished(context, envelope.status());
  }
  return AppendAndFinish(context, log_, *envelope);
}

grpc::ServerUnaryReactor* ContainerdEventsService::Forward(grpc::CallbackServerContext* context,
                                                          const cpb::ForwardRequest* request,
                                                          google::protobuf::Empty* response) {
  if (absl::Status st = ValidateEnvelope(request->envelope()); !st.ok()) {
    return Finished(context, st);
  }
  return AppendAndFinish(context, log_, request->envelope());
}

grpc::Status ContainerdEventsService::Subscribe(grpc::ServerContext* context,
                                                const cpb::SubscribeRequest* request,
                                                grpc::ServerWriter<cpb::Envelope>* writer) {
  absl::StatusOr<filters::Filter> filter = ParseEventFilters(
      std::vector<std::string>(request->filters().begin(), request->filters().end()));
  if (!filter.ok()) {
    return ToGrpcStatus(filter.status());
  }
  // gRPC sends response headers with the first message; send them once the log's
  // subscription exists, so a client that has them knows every event stored from then on
  // reaches it (containerd's Subscribe has no position marker to say so).
  return Pump(
      context, log_, StartPosition::Live(), *filter,
      [writer](uint64_t) {
        writer->SendInitialMetadata();
        return true;
      },
      [writer](const StoredEvent& event, bool more) {
        return writer->Write(event.envelope, WriteOptionsFor(more));
      });
}

BerthEventsService::BerthEventsService(EventLog& log, std::string default_namespace,
                                       int64_t max_in_flight)
    : log_(log),
      default_namespace_(std::move(default_namespace)),
      max_in_flight_(std::max<int64_t>(1, max_in_flight)) {}

grpc::ServerBidiReactor<bpb::PublishRequest, bpb::PublishAck>* BerthEventsService::Publish(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<std::string> ns = NamespaceFrom(*context, default_namespace_);
  return new StreamPublisher(log_, ns.ok() ? *std::move(ns) : std::string(), ns.status(),
                             max_in_flight_);
}

grpc::Status BerthEventsService::Subscribe(grpc::ServerContext* context,
                                           const bpb::SubscribeRequest* request,
                                           grpc::ServerWriter<bpb::StreamedEvent>* writer) {
  absl::StatusOr<filters::Filter> filter = ParseEventFilters(
      std::vector<std::string>(request->filters().begin(), request->filters().end()));
  if (!filter.ok()) {
    return ToGrpcStatus(filter.status());
  }
  StartPosition start = StartPosition::Live();
  switch (request->start_case()) {
    case bpb::SubscribeRequest::kStartSequence:
      start = StartPosition::AtSequence(request->start_sequence());
      break;
    case bpb::SubscribeRequest::kStartTime: {
      const auto& ts = request->start_time();
      if (ts.seconds() < 0 || ts.nanos() < 0 || ts.nanos() > 999999999) {
        return ToGrpcStatus(absl::InvalidArgumentError("start_time: not a valid timestamp"));
      }
      start = StartPosition::AtTime(absl::FromUnixSeconds(ts.seconds()) +
                                    absl::Nanoseconds(ts.nanos()));
      break;
    }
    case bpb::SubscribeRequest::START_NOT_SET:
      break;
  }
  return Pump(
      context, log_, start, *filter,
      [writer](uint64_t resume_after) {
        bpb::StreamedEvent marker;
        marker.set_sequence(resume_after);
        return writer->Write(marker);
      },
      [writer](const StoredEvent& event, bool more) {
        bpb::StreamedEvent item;
        item.set_sequence(event.sequence);
        *item.mutable_envelope() = event.envelope;
        return writer->Write(item, WriteOptionsFor(more));
      });
}

}  // namespace berth::eventd
