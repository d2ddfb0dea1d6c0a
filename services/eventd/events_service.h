#pragma once

// eventd's gRPC servers over an EventLog:
// - containerd.services.events.v1.Events: Publish and Forward validate as containerd's exchange
//   does (namespace identifier, topic "/a/b" of identifiers, a timestamp on forwarded
//   envelopes) and append to the log; Subscribe streams live events matching containerd
//   filters, so `ctr events` works against eventd. Its response headers are sent once it is
//   subscribed: every event stored after a client has them reaches it.
// - berth.events.v1.Events: Subscribe from a sequence or a time, each item with its sequence;
//   Publish, a client stream of events with cumulative acknowledgements (no round trip each).
// A subscription outlives bus outages: when the log's subscription breaks, the handler
// subscribes again after the last sequence it saw, so the client sees no gap and no duplicate.
// Thread-safe.

#include <string>

#include "berth/events/v1/events.grpc.pb.h"
#include "containerd/services/events/v1/events.grpc.pb.h"
#include "services/eventd/event_log.h"

namespace berth::eventd {

// Publish and Forward are callback handlers: they hand the envelope to the log and return,
// and the call completes when the log confirms it, so in-flight publishes hold no thread.
class ContainerdEventsService final
    : public ::containerd::services::events::v1::Events::WithCallbackMethod_Publish<
          ::containerd::services::events::v1::Events::WithCallbackMethod_Forward<
              ::containerd::services::events::v1::Events::Service>> {
 public:
  // `log` must outlive the service. Publish uses `default_namespace` when the request has no
  // containerd-namespace header.
  ContainerdEventsService(EventLog& log, std::string default_namespace);
  ContainerdEventsService(const ContainerdEventsService&) = delete;
  ContainerdEventsService& operator=(const ContainerdEventsService&) = delete;

  grpc::ServerUnaryReactor* Publish(
      grpc::CallbackServerContext* context,
      const ::containerd::services::events::v1::PublishRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* Forward(
      grpc::CallbackServerContext* context,
      const ::containerd::services::events::v1::ForwardRequest* request,
      google::protobuf::Empty* response) override;
  grpc::Status Subscribe(
      grpc::ServerContext* context,
      const ::containerd::services::events::v1::SubscribeRequest* request,
      grpc::ServerWriter<::containerd::services::events::v1::Envelope>* writer) override;

 private:
  EventLog& log_;
  const std::string default_namespace_;
};

// Publish is a callback handler (one reactor per call, no thread held while it waits).
class BerthEventsService final : public ::berth::events::v1::Events::WithCallbackMethod_Publish<
                                     ::berth::events::v1::Events::Service> {
 public:
  // `log` must outlive the service. Publish uses `default_namespace` when the call has no
  // containerd-namespace header. A Publish call keeps at most `max_in_flight` events handed
  // to the log and not yet settled; it reads no further request until one settles.
  BerthEventsService(EventLog& log, std::string default_namespace, int64_t max_in_flight = 4096);
  BerthEventsService(const BerthEventsService&) = delete;
  BerthEventsService& operator=(const BerthEventsService&) = delete;

  grpc::Status Subscribe(grpc::ServerContext* context,
                         const ::berth::events::v1::SubscribeRequest* request,
                         grpc::ServerWriter<::berth::events::v1::StreamedEvent>* writer) override;
  grpc::ServerBidiReactor<::berth::events::v1::PublishRequest, ::berth::events::v1::PublishAck>*
  Publish(grpc::CallbackServerContext* context) override;

 private:
  EventLog& log_;
  const std::string default_namespace_;
  const int64_t max_in_flight_;
};

// containerd's validateTopic and validateEnvelope (InvalidArgument), shared with tests.
absl::Status ValidateEnvelope(const Envelope& envelope);

// The envelope containerd's Publish makes of `request` in namespace `ns` (timestamp now), or
// InvalidArgument as containerd's Publish rejects it (bad topic, no typed event).
absl::StatusOr<Envelope> EnvelopeForPublish(
    std::string ns, const ::containerd::services::events::v1::PublishRequest& request);

}  // namespace berth::eventd
