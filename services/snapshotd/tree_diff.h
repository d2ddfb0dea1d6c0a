#pragma once

// The change set between two trees as an uncompressed OCI layer tar (PAX, OCI whiteouts), the
// two ways WalkingDiffer (walking_differ.h) finds it. Both write into `out` without closing it.

#include <string>

#include "absl/status/status.h"
#include "lib/base/byte_stream.h"

namespace berth::snapshotd {

// Walks `lower_dir` and `upper_dir` side by side and writes what differs: entries new or
// changed in upper (by type, mode, owner, size, mtime, xattrs, link target, device number and,
// when mtimes carry no sub-second part, content), a whole subtree where an entry changed type,
// and ".wh.<name>" for each entry upper lacks. Files hardlinked together in upper stay linked
// in the tar. `lower_dir` empty means an empty lower tree.
absl::Status WriteTreeDiffTar(const std::string& lower_dir, const std::string& upper_dir,
                              ByteSink& out);
// Writes an overlay upperdir as it stands: its 0/0 character devices become ".wh.<name>", a
// directory with trusted.overlay.opaque=y gets ".wh..wh..opq".
absl::Status WriteOverlayUpperTar(const std::string& upperdir, ByteSink& out);

}  // namespace berth::snapshotd
