#include "lib/events/publisher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/identifiers.h"

namespace berth::events {

absl::Status ValidateTopic(absl::string_view topic) {
  // containerd's events.validateTopic.
  if (topic.empty() || topic[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("topic \"", topic, "\": must start with '/'"));
  }
  if (topic.size() == 1) {
    return absl::InvalidArgumentError("topic \"/\": must have at least one component");
  }
  for (absl::string_view component : absl::StrSplit(topic.substr(1), '/')) {
    if (absl::Status st = ValidateIdentifier("topic component", component); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("topic \"", topic, "\": ", st.message()));
    }
  }
  return absl::OkStatus();
}

std::string TypeUrlFor(const google::protobuf::Message& event) {
  return event.GetDescriptor()->full_name();
}

::containerd::services::events::v1::Envelope MakeEnvelope(absl::string_view ns,
                                                          absl::string_view topic,
                                                          google::protobuf::Any event,
                                                          absl::Time when) {
  ::containerd::services::events::v1::Envelope envelope;
  int64_t nanos = absl::ToUnixNanos(when);
  envelope.mutable_timestamp()->set_seconds(nanos / 1000000000);
  envelope.mutable_timestamp()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  envelope.set_namespace_(std::string(ns));
  envelope.set_topic(std::string(topic));
  *envelope.mutable_event() = std::move(event);
  return envelope;
}

std::string SubjectFor(absl::string_view ns, absl::string_view topic) {
  std::string subject = absl::StrCat("berth.events.", ns);
  if (!topic.empty() && topic[0] != '/') {
    subject.push_back('.');
  }
  for (char c : topic) {
    subject.push_back(c == '/' ? '.' : c);
  }
  return subject;
}

}  // namespace berth::events
