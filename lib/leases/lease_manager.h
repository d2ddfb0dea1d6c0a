#pragma once

// The leases contract (after containerd's leases/lease.go). A lease protects the resources
// recorded under it (content, ingests, snapshots, images...) from garbage collection until it
// is deleted or expires (label "containerd.io/gc.expire", RFC 3339). contentd is the source of
// truth; its LocalLeaseManager and the GrpcLeaseManager client (this folder) implement this.
// Thread-safe.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/base/context.h"

namespace berth::leases {

struct Lease {
  std::string id;
  absl::Time created_at = absl::UnixEpoch();
  std::map<std::string, std::string> labels;
};

// A resource held by a lease. `type` is containerd's: "content", "ingests",
// "snapshots/<snapshotter>", "images"...; `id` is its key (a digest, a ref, a snapshot key).
struct Resource {
  std::string id;
  std::string type;
  friend bool operator==(const Resource& a, const Resource& b) {
    return a.id == b.id && a.type == b.type;
  }
};

class LeaseManager {
 public:
  virtual ~LeaseManager() = default;
  // AlreadyExists if the id is taken in ctx.ns; InvalidArgument for a malformed id.
  virtual absl::StatusOr<Lease> Create(const Context& ctx, const std::string& id,
                                       const std::map<std::string, std::string>& labels) = 0;
  // NotFound if absent. `sync`: collect what it held before returning.
  virtual absl::Status Delete(const Context& ctx, const std::string& id, bool sync) = 0;
  // Filters over id and labels.<key>.
  virtual absl::StatusOr<std::vector<Lease>> List(const Context& ctx,
                                                  const std::vector<std::string>& filters) = 0;
  virtual absl::Status AddResource(const Context& ctx, const std::string& lease,
                                   const Resource& resource) = 0;
  virtual absl::Status DeleteResource(const Context& ctx, const std::string& lease,
                                      const Resource& resource) = 0;
  virtual absl::StatusOr<std::vector<Resource>> ListResources(const Context& ctx,
                                                              const std::string& lease) = 0;
};

}  // namespace berth::leases
