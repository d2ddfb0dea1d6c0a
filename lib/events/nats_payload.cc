// NatsPublisher's outbox rows: an event wrapped in its Envelope, checked against NATS's
// payload limit; several stored at once (PublishAll).

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "containerd/services/events/v1/events.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/status_macros.h"
#include "lib/events/nats_publisher.h"

namespace berth::events {
namespace {

// NATS's default max_payload (1 MiB). Events are a few hundred bytes.
constexpr size_t kMaxEventBytes = 1 << 20;

}  // namespace

absl::StatusOr<std::string> OutboxPayload(absl::string_view ns, absl::string_view topic,
                                          const google::protobuf::Message& event, absl::Time now) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ns));
  BERTH_RETURN_IF_ERROR(ValidateTopic(topic));
  google::protobuf::Any any;
  any.set_type_url(TypeUrlFor(event));
  if (!event.SerializeToString(any.mutable_value())) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", event.GetDescriptor()->full_name(), ": cannot serialize"));
  }
  containerd::services::events::v1::Envelope envelope = MakeEnvelope(ns, topic, any, now);
  std::string payload;
  if (!envelope.SerializeToString(&payload)) {
    return absl::InternalError("event envelope: cannot serialize");
  }
  if (payload.size() > kMaxEventBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", event.GetDescriptor()->full_name(), ": ", payload.size(),
                     " bytes, more than NATS's default max_payload (", kMaxEventBytes, ")"));
  }
  return payload;
}

absl::Status NatsPublisher::PublishAll(
    absl::string_view ns,
    const std::vector<std::pair<std::string, const google::protobuf::Message*>>& events) {
  absl::Time now = absl::Now();
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto& [topic, event] : events) {
    BERTH_ASSIGN_OR_RETURN(std::string payload, OutboxPayload(ns, topic, *event, now));
    rows.emplace_back(SubjectFor(ns, topic), std::move(payload));
  }
  BERTH_RETURN_IF_ERROR(outbox_->AppendAll(std::move(rows), absl::ToUnixNanos(now)));
  Wake();
  return absl::OkStatus();
}

}  // namespace berth::events
