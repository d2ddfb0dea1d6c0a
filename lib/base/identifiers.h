#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace berth {

// containerd's identifier rule (namespaces, lease ids, container ids, snapshotter keys where
// containerd applies it): 1 to 76 characters, alphanumerics separated by single '.', '_' or '-',
// starting and ending with an alphanumeric. InvalidArgument, naming `what` and the reason.
absl::Status ValidateIdentifier(absl::string_view what, absl::string_view id);

inline absl::Status ValidateNamespace(absl::string_view ns) {
  return ValidateIdentifier("namespace", ns);
}

}  // namespace berth
