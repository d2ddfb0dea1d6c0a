#pragma once

// containerd's event filters (containerd/events/exchange adapt()): `topic`, `namespace`, and
// `event.<field>...` looked up in the decoded event by protobuf field name (a map field takes
// the rest of the path as its key: event.labels.foo). Events whose type this binary does not
// know have no event.* fields.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "containerd/services/events/v1/events.pb.h"
#include "lib/filters/filter.h"

namespace berth::eventd {

// Parses a subscription's filters (their OR; none matches everything). InvalidArgument,
// naming the bad filter, when one is malformed.
absl::StatusOr<filters::Filter> ParseEventFilters(const std::vector<std::string>& texts);

// Whether `envelope` passes `filter`. Thread-safe.
bool MatchEnvelope(const filters::Filter& filter,
                   const containerd::services::events::v1::Envelope& envelope);

}  // namespace berth::eventd
