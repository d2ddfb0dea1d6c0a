#include "services/eventd/events_service.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "lib/base/grpc_status.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/events/nats_publisher.h"
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

ContainerdEventsService::ContainerdEventsService(EventLog& log, std::string default_namespace)
    : log_(log), default_namespace_(std::move(default_namespace)) {}

grpc::ServerUnaryReactor* ContainerdEventsService::Publish(grpc::CallbackServerContext* context,
                                                          const cpb::PublishRequest* request,
                                                          google::protobuf::Empty* response) {
  absl::StatusOr<std::string> ns = NamespaceFrom(*context, default_namespace_);
  if (!ns.ok()) {
    return Finished(context, ns.status());
  }
  if (absl::Status st = ValidateTopicOf(request->topic()); !st.ok()) {
    return Finished(context, st);
  }
  if (!request->has_event() || request->event().type_url().empty()) {
    return Finished(context,
                    absl::InvalidArgumentError("publish: an event (Any with a type) is required"));
  }
  Envelope envelope;
  int64_t nanos = absl::ToUnixNanos(absl::Now());
  envelope.mutable_timestamp()->set_seconds(nanos / 1000000000);
  envelope.mutable_timestamp()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  envelope.set_namespace_(*std::move(ns));
  envelope.set_topic(request->topic());
  *envelope.mutable_event() = request->event();
  return AppendAndFinish(context, log_, envelope);
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
  // gRPC sends response headers with the first message; send them now so the client knows
  // it is subscribed before any event exists.
  writer->SendInitialMetadata();
  return Pump(
      context, log_, StartPosition::Live(), *filter, [](uint64_t) { return true; },
      [writer](const StoredEvent& event, bool more) {
        return writer->Write(event.envelope, WriteOptionsFor(more));
      });
}

BerthEventsService::BerthEventsService(EventLog& log) : log_(log) {}

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
