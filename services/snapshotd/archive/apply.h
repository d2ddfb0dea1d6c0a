#pragma once

// The layer extractor: reads an uncompressed tar stream with libarchive's read API and creates
// every entry itself, each path resolved inside the root by the kernel (fs.h). A layer
// can never write outside the root: absolute names and ".." are confined to it, symlinks met
// on the way are resolved as if the root were "/", and metadata is never applied through a
// symlink. (libarchive's archive_write_disk is not used: it follows symlinks in ways we cannot
// control.)
//
// OCI whiteouts: ".wh.<name>" removes <name> from the layers below; ".wh..wh..opq" hides every
// entry of its directory that came from below. In kOverlay mode (applying into an overlay
// upperdir) they become a 0/0 character device <name> and the xattr trusted.overlay.opaque=y;
// in kNative mode (applying onto a full copy of the parent) the entries are deleted. Any other
// name starting with ".wh." followed by "." is refused, as is a directory component starting
// with ".wh.".

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "lib/base/byte_stream.h"
#include "services/snapshotd/archive/fs.h"

namespace berth::snapshotd::archive {

enum class WhiteoutMode { kOverlay, kNative };

struct ApplyOptions {
  WhiteoutMode whiteouts = WhiteoutMode::kOverlay;
  // Character and block devices from the layer (a 0/0 device made for a whiteout is not one).
  // false: a layer holding one is refused (InvalidArgument).
  bool allow_devices = true;
  // chown entries to the layer's uid/gid (needs CAP_CHOWN; without it, files stay ours).
  bool set_owner = true;
  // The most tar bytes a layer may produce; past it the apply stops with ResourceExhausted.
  // 0: no limit.
  int64_t max_size = 0;
  // How paths are resolved inside the root (tests force the fallback walk).
  Resolver resolver = Resolver::kAuto;
};

struct ApplyStats {
  int64_t tar_bytes = 0;     // bytes read from the stream (all of it, padding included)
  int64_t entries = 0;       // tar entries processed
  int64_t file_bytes = 0;    // regular file data written
  int64_t whiteouts = 0;     // .wh.<name> and .wh..wh..opq entries
};

// Whether a layer may carry (and the extractor sets) the xattr `name`: user.*, trusted.*,
// security.capability and POSIX ACLs, but never overlayfs' own (trusted.overlay.*,
// user.overlay.*), which only whiteout translation produces.
bool KeepLayerXattr(absl::string_view name);

// Extracts the tar read from `tar` into the directory `root_fd`. The stream is read to its end
// (so a digest computed by `tar` covers everything). Errors:
//   InvalidArgument  not a tar, or an entry refused (the message names it)
//   DataLoss         truncated or corrupt stream
//   ResourceExhausted  ApplyOptions::max_size exceeded
// On error the root holds a partial layer; the caller discards it.
absl::StatusOr<ApplyStats> ApplyTar(int root_fd, ByteSource& tar, const ApplyOptions& options);
// Same, opening `root` (which must be a directory; symlinks in `root` itself are the caller's).
absl::StatusOr<ApplyStats> ApplyTar(const std::string& root, ByteSource& tar,
                                    const ApplyOptions& options);

}  // namespace berth::snapshotd::archive
