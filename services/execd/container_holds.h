#pragma once

// A ContainerStore whose records hold their rootfs snapshot against snapshotd's collector.
// containerd's containers are roots of its collector; here records live in execd and snapshot
// collection in snapshotd, which learns its roots from contentd's leases (DESIGN.md, "Leases
// span daemons"). containerd's Go client prepares a container's snapshot under a lease it
// deletes as soon as the record is made, so without this a collection (an image delete runs
// one) removed the rootfs of a running container. Each record with a snapshot key holds it:
//   id     ContainerLeaseId(id): "container-" + the record's id
//   label  kContainerLeaseLabel = <id>
//   holds  one resource, {type "snapshots/<record's snapshotter>", id <snapshot key>}
// - Create writes the record, then its lease; if contentd refuses, the record is deleted
//   again and the error returned (nothing changed).
// - Update writes the record, then makes its lease hold exactly its snapshot (the new one
//   added before the old one is dropped).
// - Delete removes the record, then its lease (NotFound there is fine). The snapshot itself is
//   the client's to remove (ctr and the Go client do, through execd's Snapshots service).
// Records without a snapshot key have no lease, and their Create and Delete never ask
// contentd. A crash between a record and its lease is repaired by Reconcile, which execd runs
// at start. Thread-safe as the wrapped store and client are.

#include <string>
#include <vector>

#include "lib/containers/container_store.h"
#include "lib/leases/lease_manager.h"

namespace berth::execd {

inline constexpr char kContainerLeaseLabel[] = "berth.io/container";

// The id of the lease that holds container `id`'s snapshot.
std::string ContainerLeaseId(absl::string_view id);

class HoldingContainerStore final : public containers::ContainerStore {
 public:
  // The references must outlive this object.
  HoldingContainerStore(containers::ContainerStore& store, leases::LeaseManager& leases)
      : store_(store), leases_(leases) {}
  HoldingContainerStore(const HoldingContainerStore&) = delete;
  HoldingContainerStore& operator=(const HoldingContainerStore&) = delete;

  absl::StatusOr<containers::Container> Get(const Context& ctx, absl::string_view id) override {
    return store_.Get(ctx, id);
  }
  absl::StatusOr<std::vector<containers::Container>> List(
      const Context& ctx, const std::vector<std::string>& filters) override {
    return store_.List(ctx, filters);
  }
  absl::StatusOr<containers::Container> Create(const Context& ctx,
                                               const containers::Container& container) override;
  absl::StatusOr<containers::Container> Update(const Context& ctx,
                                               const containers::Container& container,
                                               const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const Context& ctx, absl::string_view id) override;

  // Makes the lease of every record with a snapshot in `namespaces` hold it again (a crash
  // between a record and its lease lost it). Returns how many records were checked.
  absl::StatusOr<int> Reconcile(const std::vector<std::string>& namespaces);

 private:
  // Makes `container`'s lease hold exactly its snapshot (no lease without one).
  absl::Status Hold(const Context& ctx, const containers::Container& container);

  containers::ContainerStore& store_;
  leases::LeaseManager& leases_;
};

}  // namespace berth::execd
