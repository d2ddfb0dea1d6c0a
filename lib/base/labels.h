#pragma once

// containerd's label rules, shared by every store that keeps labels (contentd's blobs, leases
// and namespaces; snapshotd's snapshots). How labels are stored is each store's own business.

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace berth {

using LabelMap = std::map<std::string, std::string>;

// containerd's labels.Validate: key + value at most 4096 bytes each pair; InvalidArgument.
absl::Status ValidateLabels(const LabelMap& labels);

// Applies an update to `current` as containerd does: empty `fieldpaths` or "labels" replaces
// all labels with `given`; "labels.<key>" sets that one key from `given` (removing it when
// `given` has none or an empty value). Any other path is InvalidArgument
// ("cannot update \"<path>\" field on <what>"). Empty values are dropped, and the result must
// pass ValidateLabels. On any error `*current` is left unchanged.
absl::Status ApplyLabelUpdate(LabelMap* current, const LabelMap& given,
                              const std::vector<std::string>& fieldpaths, absl::string_view what);

}  // namespace berth
