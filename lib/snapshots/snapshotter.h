#pragma once

// The snapshotter contract (after containerd's snapshots/snapshotter.go), no gRPC in it.
// Terms: `key` names an active or view snapshot (a mutable or read-only working tree);
// `name` names a committed snapshot (immutable, usable as a parent). Keys and names share
// one namespace per snapshotter and containerd namespace. Every call takes a Context (namespace
// and lease). Implementations: OverlaySnapshotter and NativeSnapshotter (services/snapshotd),
// GrpcSnapshotter (this folder). Thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/mount/mount.h"

namespace berth::snapshots {

using Labels = std::map<std::string, std::string>;

enum class Kind { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

struct Info {
  Kind kind = Kind::kUnknown;
  std::string name;    // key or name
  std::string parent;  // name of the committed parent, empty if none
  Labels labels;
  absl::Time created_at = absl::UnixEpoch();
  absl::Time updated_at = absl::UnixEpoch();
};

struct Usage {
  int64_t size = 0;    // bytes used by this snapshot's own layer (not its parents)
  int64_t inodes = 0;
};

class Snapshotter {
 public:
  virtual ~Snapshotter() = default;
  // NotFound if absent.
  virtual absl::StatusOr<Info> Stat(const Context& ctx, const std::string& key) = 0;
  // fieldpaths: "labels" / "labels.<key>"; empty: all mutable fields (labels).
  virtual absl::StatusOr<Info> Update(const Context& ctx, const Info& info,
                                      const std::vector<std::string>& fieldpaths) = 0;
  virtual absl::StatusOr<Usage> GetUsage(const Context& ctx, const std::string& key) = 0;
  // The mounts of an active or view snapshot. FailedPrecondition for a committed one.
  virtual absl::StatusOr<std::vector<mount::Mount>> Mounts(const Context& ctx,
                                                           const std::string& key) = 0;
  // Creates an active snapshot `key` on committed `parent` (empty: none). AlreadyExists if key
  // is taken; NotFound if parent is missing; FailedPrecondition if parent is not committed.
  virtual absl::StatusOr<std::vector<mount::Mount>> Prepare(const Context& ctx,
                                                            const std::string& key,
                                                            const std::string& parent,
                                                            const Labels& labels) = 0;
  // Like Prepare, but read-only (kind view).
  virtual absl::StatusOr<std::vector<mount::Mount>> View(const Context& ctx,
                                                         const std::string& key,
                                                         const std::string& parent,
                                                         const Labels& labels) = 0;
  // Commits active `key` as `name` (key is gone afterwards). NotFound if key is missing;
  // FailedPrecondition if key is a view or committed; AlreadyExists if name is taken.
  virtual absl::Status Commit(const Context& ctx, const std::string& name, const std::string& key,
                              const Labels& labels) = 0;
  // NotFound if absent; FailedPrecondition if it has children.
  virtual absl::Status Remove(const Context& ctx, const std::string& key) = 0;
  // Filters over name, parent, kind, labels.<key>. Malformed: InvalidArgument.
  virtual absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                            const std::function<absl::Status(const Info&)>& fn) = 0;
  // Removes directories on disk that no record owns (left by a crash).
  virtual absl::Status Cleanup(const Context& ctx) = 0;
};

}  // namespace berth::snapshots
