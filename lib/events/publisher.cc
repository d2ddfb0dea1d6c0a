#include "lib/events/publisher.h"

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
