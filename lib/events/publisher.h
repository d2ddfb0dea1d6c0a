#pragma once

// Publishing lifecycle events (DESIGN.md, Events). A daemon publishes straight to NATS on
// subject berth.events.<namespace>.<topic with '/' as '.'>, payload a serialized
// containerd.services.events.v1.Envelope whose `event` is a google.protobuf.Any.

#include <google/protobuf/message.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "containerd/services/events/v1/events.pb.h"

namespace berth::events {

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Publishes `event` under `topic` in namespace `ns`. OK means the event was accepted and
  // reaches the bus in order with this publisher's earlier events. What that withstands is
  // each implementation's promise, stated in its header:
  // - NatsPublisher: OK once the event is committed (fsync) to its outbox file, so it reaches
  //   the bus even if the bus is down now or this process dies next.
  // - EventdPublisher: OK once eventd's stream has stored it, so Publish waits while eventd
  //   or the bus is down; until then the event exists only in this process's memory and is
  //   lost if the process dies.
  // InvalidArgument for a bad namespace or topic. Thread-safe.
  virtual absl::Status Publish(absl::string_view ns, absl::string_view topic,
                               const google::protobuf::Message& event) = 0;

  // Publish, at most once per `key` while the key is remembered: a repeat of a remembered key
  // returns OK and publishes nothing. For an event a caller must publish and then note durably
  // somewhere else (execd's exit_published): a crash between the two repeats the call, not the
  // event. NatsPublisher remembers the key in the outbox, in the event's own transaction, until
  // Forget(key); this default remembers nothing (Publish), which suits a publisher that keeps
  // nothing across a crash anyway.
  virtual absl::Status PublishOnce(absl::string_view ns, absl::string_view topic,
                                   const google::protobuf::Message& event, absl::string_view key) {
    (void)key;
    return Publish(ns, topic, event);
  }
  // Publishes each (topic, event) of `events` in `ns`, in order, with the promise Publish
  // gives; the first error stops it (events before it are published). NatsPublisher stores
  // them all in one outbox transaction (one fsync); this default publishes one at a time.
  virtual absl::Status PublishAll(
      absl::string_view ns,
      const std::vector<std::pair<std::string, const google::protobuf::Message*>>& events) {
    for (const auto& [topic, event] : events) {
      absl::Status st = Publish(ns, topic, *event);
      if (!st.ok()) {
        return st;
      }
    }
    return absl::OkStatus();
  }
  // Stops remembering `key` (once the caller has noted the publish itself). OK if unknown.
  virtual absl::Status Forget(absl::string_view key) {
    (void)key;
    return absl::OkStatus();
  }
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

// The Envelope every publisher makes: `event` (an Any) in `ns` under `topic`, stamped `when`.
// No validation: the caller has checked ns and topic.
::containerd::services::events::v1::Envelope MakeEnvelope(absl::string_view ns,
                                                          absl::string_view topic,
                                                          google::protobuf::Any event,
                                                          absl::Time when);

}  // namespace berth::events
