#pragma once

// Label handling shared by the local store's blobs, leases and namespaces: validation
// (containerd's 4096-byte limit), field-path updates, and the compact encoding stored in sqlite.

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::contentd::internal {

using LabelMap = std::map<std::string, std::string>;

// containerd's GC labels.
inline constexpr absl::string_view kGcRootLabel = "containerd.io/gc.root";
inline constexpr absl::string_view kGcRefContentPrefix = "containerd.io/gc.ref.content";
inline constexpr absl::string_view kGcExpireLabel = "containerd.io/gc.expire";
inline constexpr absl::string_view kGcFlatLabel = "containerd.io/gc.flat";

// containerd's labels.Validate: key + value at most 4096 bytes each pair; InvalidArgument.
absl::Status ValidateLabels(const LabelMap& labels);

// Applies an update to `current` as containerd does: empty `fieldpaths` or "labels" replaces
// all labels with `given`; "labels.<key>" sets that one key from `given` (removing it when
// `given` has none). Any other path is InvalidArgument naming `what`. Empty values are dropped.
absl::Status ApplyLabelUpdate(LabelMap* current, const LabelMap& given,
                              const std::vector<std::string>& fieldpaths, absl::string_view what);

// A self-delimiting encoding ("<len>:<key><len>:<value>"...), stored as a sqlite blob.
std::string EncodeLabels(const LabelMap& labels);
// DataLoss on a malformed encoding.
absl::StatusOr<LabelMap> DecodeLabels(absl::string_view encoded);

}  // namespace berth::contentd::internal
