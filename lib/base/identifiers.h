#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace berth {

// containerd's identifier rule (namespaces, lease ids, container ids, snapshotter keys where
// containerd applies it): 1 to 76 characters, alphanumerics separated by single '.', '_' or '-',
// starting and ending with an alphanumeric. InvalidArgument, naming `what` and the reason.
absl::Status ValidateIdentifier(absl::string_view what, absl::string_view id);

// A lease id as containerd's lease manager takes it: any non-empty id (containerd's own clients
// make "<nanoseconds>-<base64url>" ids such as "476399390-_Bu0", which the identifier rule
// refuses). berth adds what its stores and the `containerd-lease` header need: at most 255
// bytes of printable ASCII, no spaces. InvalidArgument otherwise.
absl::Status ValidateLeaseId(absl::string_view id);

inline absl::Status ValidateNamespace(absl::string_view ns) {
  return ValidateIdentifier("namespace", ns);
}

}  // namespace berth
