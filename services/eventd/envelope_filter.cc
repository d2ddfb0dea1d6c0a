#include "services/eventd/envelope_filter.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "lib/events/event_types.h"
#include "absl/strings/str_join.h"

namespace berth::eventd {
namespace {

namespace gp = ::google::protobuf;

// The message an Any holds, when its type is linked into this binary.
std::unique_ptr<gp::Message> Decode(const gp::Any& any) {
  events::LinkEventTypes();
  absl::string_view type = any.type_url();
  if (size_t slash = type.rfind('/'); slash != absl::string_view::npos) {
    type.remove_prefix(slash + 1);
  }
  const gp::Descriptor* descriptor =
      gp::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(type));
  if (descriptor == nullptr) {
    return nullptr;
  }
  const gp::Message* prototype = gp::MessageFactory::generated_factory()->GetPrototype(descriptor);
  if (prototype == nullptr) {
    return nullptr;
  }
  std::unique_ptr<gp::Message> message(prototype->New());
  if (!message->ParseFromString(any.value())) {
    return nullptr;
  }
  return message;
}

std::optional<std::string> Scalar(const gp::Message& m, const gp::FieldDescriptor* f) {
  const gp::Reflection* r = m.GetReflection();
  switch (f->cpp_type()) {
    case gp::FieldDescriptor::CPPTYPE_STRING: {
      std::string v = r->GetString(m, f);
      if (v.empty()) {
        return std::nullopt;  // containerd treats an empty field as absent
      }
      return v;
    }
    case gp::FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f) ? "true" : "false";
    case gp::FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(m, f));
    case gp::FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(m, f));
    case gp::FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(m, f));
    case gp::FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(m, f));
    case gp::FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, f)->name();
    default:
      return std::nullopt;
  }
}

// Follows `path` (starting at path[from]) through `m`.
std::optional<std::string> Lookup(const gp::Message& m, const std::vector<std::string>& path,
                                  size_t from) {
  if (from >= path.size()) {
    return std::nullopt;
  }
  const gp::FieldDescriptor* f = m.GetDescriptor()->FindFieldByName(path[from]);
  if (f == nullptr) {
    return std::nullopt;
  }
  const gp::Reflection* r = m.GetReflection();
  if (f->is_map()) {
    // map<string, string>: the rest of the path, joined with dots, is the key.
    std::string key = absl::StrJoin(path.begin() + from + 1, path.end(), ".");
    const gp::Descriptor* entry = f->message_type();
    const gp::FieldDescriptor* key_field = entry->map_key();
    const gp::FieldDescriptor* value_field = entry->map_value();
    if (key_field->cpp_type() != gp::FieldDescriptor::CPPTYPE_STRING) {
      return std::nullopt;
    }
    for (int i = 0; i < r->FieldSize(m, f); ++i) {
      const gp::Message& item = r->GetRepeatedMessage(m, f, i);
      if (item.GetReflection()->GetString(item, key_field) == key) {
        return Scalar(item, value_field);
      }
    }
    return std::nullopt;
  }
  if (f->is_repeated()) {
    return std::nullopt;
  }
  if (f->cpp_type() == gp::FieldDescriptor::CPPTYPE_MESSAGE) {
    if (!r->HasField(m, f)) {
      return std::nullopt;
    }
    return Lookup(r->GetMessage(m, f), path, from + 1);
  }
  if (from + 1 != path.size()) {
    return std::nullopt;
  }
  return Scalar(m, f);
}

}  // namespace

absl::StatusOr<filters::Filter> ParseEventFilters(const std::vector<std::string>& texts) {
  absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(texts);
  if (!filter.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("subscription filters: ", filter.status().message()));
  }
  return filter;
}

bool MatchEnvelope(const filters::Filter& filter,
                   const containerd::services::events::v1::Envelope& envelope) {
  if (filter.MatchesEverything()) {
    return true;
  }
  bool decoded = false;
  std::unique_ptr<gp::Message> event;  // decoded on the first event.* lookup
  return filter.Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
    if (path.empty()) {
      return std::nullopt;
    }
    if (path.size() == 1 && path[0] == "topic") {
      if (envelope.topic().empty()) {
        return std::nullopt;
      }
      return envelope.topic();
    }
    if (path.size() == 1 && path[0] == "namespace") {
      if (envelope.namespace_().empty()) {
        return std::nullopt;
      }
      return envelope.namespace_();
    }
    if (path[0] != "event" || path.size() < 2) {
      return std::nullopt;
    }
    if (!decoded) {
      decoded = true;
      event = Decode(envelope.event());
    }
    if (event == nullptr) {
      return std::nullopt;
    }
    return Lookup(*event, path, 1);
  });
}

}  // namespace berth::eventd
