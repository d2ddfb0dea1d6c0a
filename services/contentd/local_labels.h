#pragma once

// Labels in the local store's blobs, leases and namespaces: containerd's GC labels and the
// compact encoding stored in sqlite. Validation and field-path updates are containerd's rules,
// shared with snapshotd: lib/base/labels.h.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/labels.h"

namespace berth::contentd::internal {

// containerd's GC labels.
inline constexpr absl::string_view kGcRootLabel = "containerd.io/gc.root";
inline constexpr absl::string_view kGcRefContentPrefix = "containerd.io/gc.ref.content";
inline constexpr absl::string_view kGcExpireLabel = "containerd.io/gc.expire";
inline constexpr absl::string_view kGcFlatLabel = "containerd.io/gc.flat";

// A self-delimiting encoding ("<len>:<key><len>:<value>"...), stored as a sqlite blob.
std::string EncodeLabels(const LabelMap& labels);
// DataLoss on a malformed encoding.
absl::StatusOr<LabelMap> DecodeLabels(absl::string_view encoded);

}  // namespace berth::contentd::internal
