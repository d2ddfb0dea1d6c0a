// LocalContentStore's leases::LeaseManager (see local_file_store.h). Collection of what a
// released lease held lives in local_gc.cc.

#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/status_macros.h"
#include "lib/filters/filter.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd::internal {

namespace {

absl::Status ValidateResource(const leases::Resource& resource) {
  if (resource.type.empty()) {
    return absl::InvalidArgumentError("lease resource type must not be empty");
  }
  if (resource.id.empty()) {
    return absl::InvalidArgumentError("lease resource id must not be empty");
  }
  if (resource.type == "content") {
    absl::StatusOr<Digest> digest = Digest::Parse(resource.id);
    if (!digest.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lease resource content ", resource.id, ": ", digest.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<leases::Lease> FileStore::Create(const Context& ctx, const std::string& id,
                                                const std::map<std::string, std::string>& labels) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_RETURN_IF_ERROR(ValidateLeaseId(id));
  BERTH_RETURN_IF_ERROR(ValidateLabels(labels));
  leases::Lease lease;
  lease.id = id;
  lease.created_at = absl::Now();
  for (const auto& [key, value] : labels) {
    if (!value.empty()) {
      lease.labels.emplace(key, value);
    }
  }
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(db_->Transaction([&]() -> absl::Status {
    BERTH_RETURN_IF_ERROR(meta_->RegisterNamespace(ctx.ns));
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement ins,
        db_->Prepare(
            "INSERT OR IGNORE INTO leases (ns, id, created_at, labels) VALUES (?, ?, ?, ?)"));
    BERTH_RETURN_IF_ERROR(ins.Bind(1, ctx.ns)
                              .Bind(2, id)
                              .Bind(3, ToNanos(lease.created_at))
                              .BindBlob(4, EncodeLabels(lease.labels))
                              .Run());
    if (db_->Changes() == 0) {
      return absl::AlreadyExistsError(absl::StrCat("lease ", id, ": already exists"));
    }
    return absl::OkStatus();
  }));
  return lease;
}

absl::Status FileStore::Delete(const Context& ctx, const std::string& id, bool sync) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  // Collection is always synchronous here: it is one pass over one namespace's rows.
  std::vector<Removal> removed;
  {
    absl::MutexLock lock(&mu_);
    GcResult result;
    BERTH_RETURN_IF_ERROR(DeleteLeaseLocked(ctx.ns, id, &result, &removed));
  }
  Publish(removed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<leases::Lease>> FileStore::List(
    const Context& ctx, const std::vector<std::string>& filters) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
  if (!filter.ok()) {
    return filter.status();
  }
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare("SELECT id, created_at, labels FROM leases WHERE ns = ? ORDER BY id"));
  st.Bind(1, ctx.ns);
  std::vector<leases::Lease> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    leases::Lease lease;
    lease.id = st.Text(0);
    lease.created_at = FromNanos(st.Int(1));
    absl::StatusOr<LabelMap> labels = DecodeLabels(st.Text(2));
    if (!labels.ok()) {
      return labels.status();
    }
    lease.labels = std::move(*labels);
    filters::Adaptor adaptor = filters::MakeAdaptor(
        [&](absl::string_view field) -> std::optional<std::string> {
          if (field == "id") {
            return lease.id;
          }
          return std::nullopt;
        },
        &lease.labels);
    if (filter->Match(adaptor)) {
      out.push_back(std::move(lease));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status FileStore::AddResource(const Context& ctx, const std::string& lease,
                                    const leases::Resource& resource) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_RETURN_IF_ERROR(ValidateResource(resource));
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(CheckLeaseLocked(ctx.ns, lease));
  return meta_->AddLeaseResource(ctx.ns, lease, resource.type, resource.id);
}

absl::Status FileStore::DeleteResource(const Context& ctx, const std::string& lease,
                                       const leases::Resource& resource) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_RETURN_IF_ERROR(ValidateResource(resource));
  std::vector<Removal> removed;
  {
    absl::MutexLock lock(&mu_);
    BERTH_RETURN_IF_ERROR(CheckLeaseLocked(ctx.ns, lease));
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement st,
        db_->Prepare(
            "DELETE FROM lease_resources WHERE ns = ? AND lease = ? AND type = ? AND id = ?"));
    if (absl::Status s =
            st.Bind(1, ctx.ns).Bind(2, lease).Bind(3, resource.type).Bind(4, resource.id).Run();
        !s.ok()) {
      return s;
    }
    // What the lease alone kept alive through this resource goes now, as when a lease goes.
    GcScope scope;
    if (resource.type == "content") {
      scope.blobs.insert(resource.id);
    } else if (resource.type == "ingests") {
      scope.ingests.insert(resource.id);
    }
    if (!scope.blobs.empty() || !scope.ingests.empty()) {
      GcResult result;
      BERTH_RETURN_IF_ERROR(CollectLocked(ctx.ns, scope, &result, &removed));
    }
  }
  Publish(removed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<leases::Resource>> FileStore::ListResources(const Context& ctx,
                                                                       const std::string& lease) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(CheckLeaseLocked(ctx.ns, lease));
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare(
          "SELECT id, type FROM lease_resources WHERE ns = ? AND lease = ? ORDER BY type, id"));
  st.Bind(1, ctx.ns).Bind(2, lease);
  std::vector<leases::Resource> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.push_back(leases::Resource{st.Text(0), st.Text(1)});
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace berth::contentd::internal
