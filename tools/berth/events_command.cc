// `berth events [FILTER...] [--since SEQ|TIME] [--count N]`: streams events from eventd's
// berth.events.v1.Events.Subscribe, one line each, resuming after eventd restarts. Text lines are
// "SEQUENCE TIMESTAMP NAMESPACE TOPIC EVENT-JSON"; with --json, one JSON object a line.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/events/event_types.h"
#include "absl/time/time.h"
#include "lib/events/eventd_client.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

namespace gp = ::google::protobuf;
using ::containerd::services::events::v1::Envelope;

constexpr absl::string_view kDaemon = "eventd";

struct EventsArgs {
  std::vector<std::string> filters;
  std::string since;
  int64_t count = 0;
};

// The event as JSON (proto field names, as ctr shows them) when its type is known here,
// otherwise its type and base64 bytes.
nlohmann::json EventJson(const gp::Any& any) {
  events::LinkEventTypes();
  absl::string_view type = any.type_url();
  if (size_t slash = type.rfind('/'); slash != absl::string_view::npos) {
    type.remove_prefix(slash + 1);
  }
  const gp::Descriptor* descriptor =
      gp::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(type));
  if (descriptor != nullptr) {
    std::unique_ptr<gp::Message> message(
        gp::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
    std::string json;
    gp::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    if (message->ParseFromString(any.value()) &&
        gp::util::MessageToJsonString(*message, &json, options).ok()) {
      nlohmann::json parsed = nlohmann::json::parse(json, nullptr, false);
      if (!parsed.is_discarded()) {
        return parsed;
      }
    }
  }
  nlohmann::json raw = nlohmann::json::object();
  raw["@type"] = any.type_url();
  raw["value_size"] = any.value().size();
  return raw;
}

absl::Time TimeOf(const Envelope& envelope) {
  return absl::FromUnixSeconds(envelope.timestamp().seconds()) +
         absl::Nanoseconds(envelope.timestamp().nanos());
}

absl::Status Events(Session& session, const EventsArgs& args) {
  events::EventdSubscribeOptions options;
  options.filters = args.filters;
  options.ns = session.ns();
  if (!args.since.empty()) {
    uint64_t sequence = 0;
    absl::Time time;
    std::string error;
    if (absl::SimpleAtoi(args.since, &sequence)) {
      options.start_sequence = sequence;
    } else if (absl::ParseTime(absl::RFC3339_full, args.since, &time, &error)) {
      options.start_time = time;
    } else {
      return UsageError(absl::StrCat("--since ", args.since,
                                     ": want a sequence number or an RFC 3339 time"));
    }
  }
  if (args.count < 0) {
    return UsageError("--count must not be negative");
  }
  options.on_reconnect = [](const absl::Status& why) {
    std::cerr << "berth: events: stream interrupted (" << why.message()
              << "); resuming\n";
  };
  events::EventdSubscriber subscriber(session.Channel(kDaemon), options);
  int64_t printed = 0;
  bool json = session.json();
  absl::Status status = subscriber.Run([&](uint64_t sequence, const Envelope& envelope) {
    nlohmann::json event = EventJson(envelope.event());
    if (json) {
      nlohmann::json line = {{"sequence", sequence},
                             {"timestamp", FormatTimestamp(TimeOf(envelope))},
                             {"namespace", envelope.namespace_()},
                             {"topic", envelope.topic()},
                             {"type", envelope.event().type_url()},
                             {"event", event}};
      std::cout << line.dump() << std::endl;
    } else {
      std::cout << sequence << ' ' << FormatTimestamp(TimeOf(envelope)) << ' '
                << envelope.namespace_() << ' ' << envelope.topic() << ' ' << event.dump()
                << std::endl;
    }
    ++printed;
    return args.count == 0 || printed < args.count;
  });
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterEventsCommand(CLI::App& root, Runner& runner) {
  auto args = std::make_shared<EventsArgs>();
  CLI::App* events = root.add_subcommand(
      "events", "Stream events from eventd (SEQUENCE TIMESTAMP NAMESPACE TOPIC EVENT)");
  events->add_option("FILTER", args->filters,
                     "containerd filters over topic, namespace and event.<field>, e.g. "
                     "'topic~=^/content/' (any one matching)");
  events->add_option("--since", args->since,
                     "Replay from this stream sequence (1: all history) or RFC 3339 time, then "
                     "follow live events");
  events->add_option("--count", args->count, "Exit after printing this many events (0: never)");
  events->callback(runner.Wrap([args](Session& session) { return Events(session, *args); }));
}

}  // namespace berth::cli
