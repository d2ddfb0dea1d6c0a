#pragma once

// Publishing lifecycle events (DESIGN.md, Events). A daemon publishes straight to NATS on
// subject berth.events.<namespace>.<topic with '/' as '.'>, payload a serialized
// containerd.services.events.v1.Envelope whose `event` is a google.protobuf.Any.

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace berth::events {

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Durable once it returns OK: the event is in the outbox (or delivered) and will reach the
  // bus, in order, even if the bus is down now or the process dies next. Thread-safe.
  virtual absl::Status Publish(absl::string_view ns, absl::string_view topic,
                               const google::protobuf::Message& event) = 0;
};

// "berth.events.default.tasks.exit" for ("default", "/tasks/exit").
std::string SubjectFor(absl::string_view ns, absl::string_view topic);

// containerd's topic rule (events/exchange validateTopic): "/" followed by one or more
// identifier components separated by "/". InvalidArgument naming the topic otherwise.
absl::Status ValidateTopic(absl::string_view topic);

// The Any.type_url for an event message. containerd (typeurl, for proto messages) uses the bare
// full name ("containerd.events.TaskExit"), without a "types.containerd.io/" or
// "type.googleapis.com/" prefix; ctr and containerd's clients only resolve that form.
std::string TypeUrlFor(const google::protobuf::Message& event);

}  // namespace berth::events
