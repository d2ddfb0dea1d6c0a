#include "services/execd/container_holds.h"

#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"

namespace berth::execd {
namespace {

// The lease calls carry the namespace and deadline, not the client's own lease.
Context LeaseContext(const Context& ctx) { return Context{ctx.ns, "", ctx.deadline}; }

}  // namespace

std::string ContainerLeaseId(absl::string_view id) { return absl::StrCat("container-", id); }

absl::Status HoldingContainerStore::Hold(const Context& ctx,
                                         const containers::Container& container) {
  const Context lease_ctx = LeaseContext(ctx);
  const std::string lease = ContainerLeaseId(container.id);
  if (container.snapshot_key.empty()) {
    absl::Status deleted = leases_.Delete(lease_ctx, lease, false);
    return absl::IsNotFound(deleted) ? absl::OkStatus() : deleted;
  }
  absl::StatusOr<leases::Lease> created =
      leases_.Create(lease_ctx, lease, {{kContainerLeaseLabel, container.id}});
  if (!created.ok() && !absl::IsAlreadyExists(created.status())) {
    return created.status();
  }
  const leases::Resource wanted{container.snapshot_key,
                                absl::StrCat("snapshots/", container.snapshotter)};
  BERTH_ASSIGN_OR_RETURN(std::vector<leases::Resource> held,
                         leases_.ListResources(lease_ctx, lease));
  bool holds = false;
  for (const leases::Resource& resource : held) {
    holds = holds || resource == wanted;
  }
  if (!holds) {
    BERTH_RETURN_IF_ERROR(leases_.AddResource(lease_ctx, lease, wanted));
  }
  for (const leases::Resource& resource : held) {
    if (!(resource == wanted)) {
      BERTH_RETURN_IF_ERROR(leases_.DeleteResource(lease_ctx, lease, resource));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<containers::Container> HoldingContainerStore::Create(
    const Context& ctx, const containers::Container& container) {
  BERTH_ASSIGN_OR_RETURN(containers::Container created, store_.Create(ctx, container));
  if (created.snapshot_key.empty()) {
    return created;  // nothing to hold: contentd is not asked (it need not be running)
  }
  if (absl::Status held = Hold(ctx, created); !held.ok()) {
    if (absl::Status undone = store_.Delete(ctx.Detached(), created.id); !undone.ok()) {
      return absl::Status(held.code(), absl::StrCat(held.message(), "; removing the record: ",
                                                    undone.message()));
    }
    return absl::Status(held.code(), absl::StrCat("container ", created.id,
                                                  ": holding its snapshot ",
                                                  created.snapshot_key,
                                                  " with a lease on contentd: ", held.message()));
  }
  return created;
}

absl::StatusOr<containers::Container> HoldingContainerStore::Update(
    const Context& ctx, const containers::Container& container,
    const std::vector<std::string>& fieldpaths) {
  BERTH_ASSIGN_OR_RETURN(containers::Container updated,
                         store_.Update(ctx, container, fieldpaths));
  BERTH_RETURN_IF_ERROR(Hold(ctx, updated));
  return updated;
}

absl::Status HoldingContainerStore::Delete(const Context& ctx, absl::string_view id) {
  BERTH_ASSIGN_OR_RETURN(containers::Container existing, store_.Get(ctx, id));
  BERTH_RETURN_IF_ERROR(store_.Delete(ctx, id));
  if (existing.snapshot_key.empty()) {
    return absl::OkStatus();  // it had no lease: contentd is not asked
  }
  absl::Status deleted = leases_.Delete(LeaseContext(ctx), ContainerLeaseId(id), false);
  return absl::IsNotFound(deleted) ? absl::OkStatus() : deleted;
}

absl::StatusOr<int> HoldingContainerStore::Reconcile(const std::vector<std::string>& namespaces) {
  int checked = 0;
  for (const std::string& ns : namespaces) {
    const Context ctx = Context{ns, ""}.WithTimeout(absl::Seconds(30));
    BERTH_ASSIGN_OR_RETURN(std::vector<containers::Container> records, store_.List(ctx, {}));
    for (const containers::Container& record : records) {
      if (!record.snapshot_key.empty()) {
        BERTH_RETURN_IF_ERROR(Hold(ctx, record));
        ++checked;
      }
    }
  }
  return checked;
}

}  // namespace berth::execd
