// LocalContentStore's leases::LeaseManager (see local_file_store.h). Collection of what a
// released lease held lives in local_gc.cc.

#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
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
      return absl::InvalidArgumentError(absl::StrCat(
          "lease resource content ", resource.id, ": ", digest.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<leases::Lease> FileStore::Create(const Context& ctx, const std::string& id,
                                                const std::map<std::string, std::string>& labels) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateIdentifier("lease", id); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateLabels(labels); !st.ok()) {
    return st;
  }
  leases::Lease lease;
  lease.id = id;
  lease.created_at = absl::Now();
  for (const auto& [key, value] : labels) {
    if (!value.empty()) {
      lease.labels.emplace(key, value);
    }
  }
  absl::MutexLock lock(&mu_);
  absl::Status st = db_->Transaction([&]() -> absl::Status {
    if (absl::Status s = RegisterNamespaceLocked(ctx.ns); !s.ok()) {
      return s;
    }
    absl::StatusOr<sqlite::Statement> ins = db_->Prepare(
        "INSERT OR IGNORE INTO leases (ns, id, created_at, labels) VALUES (?, ?, ?, ?)");
    if (!ins.ok()) {
      return ins.status();
    }
    if (absl::Status s = ins->Bind(1, ctx.ns)
                             .Bind(2, id)
                             .Bind(3, ToNanos(lease.created_at))
                             .BindBlob(4, EncodeLabels(lease.labels))
                             .Run();
        !s.ok()) {
      return s;
    }
    if (db_->Changes() == 0) {
      return absl::AlreadyExistsError(absl::StrCat("lease ", id, ": already exists"));
    }
    return absl::OkStatus();
  });
  if (!st.ok()) {
    return st;
  }
  return lease;
}

absl::Status FileStore::Delete(const Context& ctx, const std::string& id, bool sync) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  // Collection is always synchronous here: it is one pass over one namespace's rows.
  std::vector<Removal> removed;
  {
    absl::MutexLock lock(&mu_);
    GcResult result;
    if (absl::Status st = DeleteLeaseLocked(ctx.ns, id, &result, &removed); !st.ok()) {
      return st;
    }
  }
  Publish(removed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<leases::Lease>> FileStore::List(
    const Context& ctx, const std::vector<std::string>& filters) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
  if (!filter.ok()) {
    return filter.status();
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("SELECT id, created_at, labels FROM leases WHERE ns = ? ORDER BY id");
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ctx.ns);
  std::vector<leases::Lease> out;
  absl::Status scan = st->ForEachRow([&]() -> absl::Status {
    leases::Lease lease;
    lease.id = st->Text(0);
    lease.created_at = FromNanos(st->Int(1));
    absl::StatusOr<LabelMap> labels = DecodeLabels(st->Text(2));
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
  });
  if (!scan.ok()) {
    return scan;
  }
  return out;
}

absl::Status FileStore::AddResource(const Context& ctx, const std::string& lease,
                                    const leases::Resource& resource) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateResource(resource); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckLeaseLocked(Context{ctx.ns, lease}); !st.ok()) {
    return st;
  }
  return AddLeaseResourceLocked(ctx.ns, lease, resource.type, resource.id);
}

absl::Status FileStore::DeleteResource(const Context& ctx, const std::string& lease,
                                       const leases::Resource& resource) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateResource(resource); !st.ok()) {
    return st;
  }
  std::vector<Removal> removed;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status st = CheckLeaseLocked(Context{ctx.ns, lease}); !st.ok()) {
      return st;
    }
    absl::StatusOr<sqlite::Statement> st = db_->Prepare(
        "DELETE FROM lease_resources WHERE ns = ? AND lease = ? AND type = ? AND id = ?");
    if (!st.ok()) {
      return st.status();
    }
    if (absl::Status s =
            st->Bind(1, ctx.ns).Bind(2, lease).Bind(3, resource.type).Bind(4, resource.id).Run();
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
      if (absl::Status s = CollectLocked(ctx.ns, scope, &result, &removed); !s.ok()) {
        return s;
      }
    }
  }
  Publish(removed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<leases::Resource>> FileStore::ListResources(const Context& ctx,
                                                                       const std::string& lease) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckLeaseLocked(Context{ctx.ns, lease}); !st.ok()) {
    return st;
  }
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "SELECT id, type FROM lease_resources WHERE ns = ? AND lease = ? ORDER BY type, id");
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ctx.ns).Bind(2, lease);
  std::vector<leases::Resource> out;
  absl::Status scan = st->ForEachRow([&]() -> absl::Status {
    out.push_back(leases::Resource{st->Text(0), st->Text(1)});
    return absl::OkStatus();
  });
  if (!scan.ok()) {
    return scan;
  }
  return out;
}

}  // namespace berth::contentd::internal
