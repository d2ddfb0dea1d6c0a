#pragma once

// containerd's event messages (proto/containerd/events/*.proto) looked up by name, for code that
// decodes an Envelope's Any by its type_url (filters on event.<field>, the CLI's JSON). A static
// library only links the generated files something references; this references them all.

namespace berth::events {

// Makes sure every containerd event type is in the generated descriptor pool. Cheap; call it
// once before looking types up by name.
void LinkEventTypes();

}  // namespace berth::events
