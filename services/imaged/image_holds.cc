#include "services/imaged/image_holds.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/digest.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/images/oci.h"

namespace berth::imaged {

namespace {

// Calls to contentd and snapshotd made on the record's behalf: the caller's namespace and
// deadline, never its lease (the image's lease is not the caller's to extend).
Context Unleased(const Context& caller) {
  Context ctx = caller;
  ctx.lease.clear();
  return ctx;
}

leases::Resource TargetResource(const images::Image& image) {
  return {image.target.digest.ToString(), "content"};
}

constexpr char kGcRoot[] = "containerd.io/gc.root";

}  // namespace

bool IsOlderBerthsRoot(const content::Info& target, absl::string_view media_type) {
  auto root = target.labels.find(kGcRoot);
  if (root == target.labels.end()) {
    return false;
  }
  absl::Time set;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_sec, root->second, absl::UTCTimeZone(), &set, &error) ||
      absl::FormatTime(absl::RFC3339_sec, set, absl::UTCTimeZone()) != root->second) {
    return false;
  }
  if (target.updated_at < set || target.updated_at > set + absl::Minutes(1)) {
    return false;
  }
  return target.labels.count(images::IsIndexType(media_type)
                                 ? "containerd.io/gc.ref.content.m.0"
                                 : "containerd.io/gc.ref.content.config") != 0;
}

std::string ImageLeaseId(absl::string_view name) {
  return absl::StrCat("image-", Sha256Of(name).hex());
}

HoldingImageStore::HoldingImageStore(images::ImageStore& store, leases::LeaseManager& leases,
                                     snapshots::Collector* collector,
                                     content::ContentStore* content)
    : ForwardingImageStore(store), leases_(leases), collector_(collector), content_(content) {
  if (collector_ != nullptr) {
    thread_ = std::thread([this] { Loop(); });
  }
}

HoldingImageStore::~HoldingImageStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

absl::StatusOr<bool> HoldingImageStore::Hold(const Context& caller, const images::Image& image) {
  Context ctx = Unleased(caller);
  const std::string id = ImageLeaseId(image.name);
  bool changed = false;
  absl::StatusOr<leases::Lease> created = leases_.Create(ctx, id, {{kImageLeaseLabel, image.name}});
  if (created.ok()) {
    changed = true;
  } else if (created.status().code() != absl::StatusCode::kAlreadyExists) {
    return created.status();
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<leases::Resource> held, leases_.ListResources(ctx, id));
  const leases::Resource want = TargetResource(image);
  bool has = false;
  for (const leases::Resource& r : held) {
    has = has || r == want;
  }
  if (!has) {
    BERTH_RETURN_IF_ERROR(leases_.AddResource(ctx, id, want));
    changed = true;
  }
  for (const leases::Resource& r : held) {
    if (!(r == want)) {  // the old target, released only once the new one is held
      BERTH_RETURN_IF_ERROR(leases_.DeleteResource(ctx, id, r));
      changed = true;
    }
  }
  return changed;
}

absl::StatusOr<bool> HoldingImageStore::DropOlderBerthsRoot(const Context& caller,
                                                            const images::Image& image) {
  if (content_ == nullptr) {
    return false;
  }
  Context ctx = Unleased(caller);
  absl::StatusOr<content::Info> target = content_->GetInfo(ctx, image.target.digest);
  if (absl::IsNotFound(target.status())) {
    return false;
  }
  BERTH_RETURN_IF_ERROR(target.status());
  if (!IsOlderBerthsRoot(*target, image.target.media_type)) {
    return false;
  }
  content::Info update;
  update.digest = image.target.digest;  // no labels: the named one goes
  BERTH_RETURN_IF_ERROR(
      content_->Update(ctx, update, {absl::StrCat("labels.", kGcRoot)}).status());
  return true;
}

absl::StatusOr<images::Image> HoldingImageStore::Create(const Context& ctx,
                                                        const images::Image& image) {
  BERTH_ASSIGN_OR_RETURN(images::Image stored, store_.Create(ctx, image));
  if (absl::StatusOr<bool> held = Hold(ctx, stored); !held.ok()) {
    if (absl::Status undone = store_.Delete(ctx, stored.name, false); !undone.ok()) {
      BERTH_LOG(Warn) << "imaged: image " << stored.name << " stays unheld until imaged restarts: "
                      << undone;
    }
    return absl::Status(held.status().code(),
                        absl::StrCat("image ", stored.name, ": holding its target on contentd: ",
                                     held.status().message()));
  }
  return stored;
}

absl::StatusOr<images::Image> HoldingImageStore::Update(
    const Context& ctx, const images::Image& image, const std::vector<std::string>& fieldpaths) {
  BERTH_ASSIGN_OR_RETURN(images::Image stored, store_.Update(ctx, image, fieldpaths));
  if (absl::StatusOr<bool> held = Hold(ctx, stored); !held.ok()) {
    return absl::Status(held.status().code(),
                        absl::StrCat("image ", stored.name, " updated, but holding its target on "
                                     "contentd failed (repaired when imaged restarts): ",
                                     held.status().message()));
  }
  return stored;
}

absl::Status HoldingImageStore::Delete(const Context& caller, absl::string_view name, bool sync) {
  BERTH_RETURN_IF_ERROR(store_.Delete(caller, name, sync));
  Context ctx = Unleased(caller);
  // contentd collects what the lease alone held before answering, whatever `sync` says.
  absl::Status released = leases_.Delete(ctx, ImageLeaseId(name), sync);
  if (!released.ok() && released.code() != absl::StatusCode::kNotFound) {
    return absl::Status(released.code(),
                        absl::StrCat("image ", name, " deleted, but releasing what it held on "
                                     "contentd failed (retried when imaged restarts): ",
                                     released.message()));
  }
  if (collector_ == nullptr) {
    return absl::OkStatus();
  }
  if (!sync) {
    CollectLater(ctx.ns);
    return absl::OkStatus();
  }
  // snapshotd is optional for imaged (pulls that do not unpack work without it): a collection
  // that fails is logged and tried again in the background, the record being gone already.
  absl::StatusOr<std::vector<std::string>> collected = collector_->Collect(ctx);
  if (!collected.ok()) {
    BERTH_LOG(Warn) << "imaged: image " << name << " deleted, but collecting its snapshots in "
                    << ctx.ns << " failed (tried again in the background): "
                    << collected.status();
    CollectLater(ctx.ns);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> HoldingImageStore::Reconcile(const std::vector<std::string>& namespaces) {
  int changes = 0;
  for (const std::string& ns : namespaces) {
    Context ctx;
    ctx.ns = ns;
    ctx.deadline = absl::Now() + absl::Minutes(1);
    BERTH_ASSIGN_OR_RETURN(std::vector<images::Image> records, store_.List(ctx, {}));
    std::map<std::string, const images::Image*> by_lease;
    for (const images::Image& image : records) {
      by_lease[ImageLeaseId(image.name)] = &image;
      BERTH_ASSIGN_OR_RETURN(bool changed, Hold(ctx, image));
      if (changed) {
        BERTH_LOG(Info) << "imaged: image " << ns << "/" << image.name << " holds its target again";
        ++changes;
      }
      BERTH_ASSIGN_OR_RETURN(bool migrated, DropOlderBerthsRoot(ctx, image));
      if (migrated) {
        BERTH_LOG(Info) << "imaged: image " << ns << "/" << image.name
                        << ": dropped the gc.root an older berth set on its target (its lease "
                           "holds it)";
        ++changes;
      }
    }
    BERTH_ASSIGN_OR_RETURN(
        std::vector<leases::Lease> leases,
        leases_.List(ctx, {absl::StrCat("labels.\"", kImageLeaseLabel, "\"")}));
    bool released = false;
    for (const leases::Lease& lease : leases) {
      if (by_lease.count(lease.id) != 0) {
        continue;
      }
      absl::Status deleted = leases_.Delete(ctx, lease.id, false);
      if (!deleted.ok() && deleted.code() != absl::StatusCode::kNotFound) {
        return deleted;
      }
      BERTH_LOG(Info) << "imaged: released lease " << ns << "/" << lease.id
                      << " of a deleted image record";
      released = true;
      ++changes;
    }
    if (released && collector_ != nullptr) {
      CollectLater(ns);
    }
  }
  return changes;
}

void HoldingImageStore::CollectLater(const std::string& ns) {
  absl::MutexLock lock(&mu_);
  pending_.insert(ns);
}

void HoldingImageStore::Loop() {
  for (;;) {
    std::set<std::string> todo;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](HoldingImageStore* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->pending_.empty();
          },
          this));
      if (stopping_) {
        return;
      }
      todo.swap(pending_);
    }
    for (const std::string& ns : todo) {
      Context ctx;
      ctx.ns = ns;
      ctx.deadline = absl::Now() + absl::Minutes(5);
      absl::StatusOr<std::vector<std::string>> removed = collector_->Collect(ctx);
      if (!removed.ok()) {
        BERTH_LOG(Warn) << "imaged: collecting snapshots in " << ns << ": " << removed.status();
      }
    }
  }
}

}  // namespace berth::imaged
