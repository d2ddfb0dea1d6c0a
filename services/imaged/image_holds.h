#pragma once

// An ImageStore that makes image records hold what they use (issue 10, "images keep what they
// use alive"). containerd's images are roots of its collector; here records live in imaged and
// collection in contentd and snapshotd, so each record holds its target through a lease on
// contentd (DESIGN.md, "Leases span daemons"):
//   id     ImageLeaseId(name): "image-" + the sha256 hex of the record's name
//   label  kImageLeaseLabel = <name>
//   holds  one resource, {type "content", id <target digest>}
// contentd's collector follows the target's gc.ref.content labels (manifest -> config and
// layers; index -> manifests), and snapshotd's follows the config's gc.ref.snapshot label to
// the unpacked chain, so a record keeps its whole image. Two records naming one target (a tag)
// hold it twice; deleting one leaves the other's hold.
//
// - Create and Update write the record, then make its lease hold exactly its target (adding the
//   new target before dropping the old). If contentd refuses, a created record is deleted
//   again and the error returned; an updated one stays (Reconcile repairs it).
// - Delete removes the record, then deletes its lease; contentd collects what it alone held
//   at once (a failure to reach contentd is returned; the lease goes at the next start). With
//   `sync`, snapshotd's collector runs in the call's namespace before Delete returns; without,
//   it runs in the background. snapshotd is optional for imaged (pulls that do not unpack work
//   without it): a sync collection that fails is logged and tried again in the background.
// - A crash between the record and its lease is repaired by Reconcile, which imaged runs at
//   start before releasing dead pulls' leases: every record's lease is made to hold its target,
//   leases of records that are gone are deleted (and snapshotd's collector runs there).
// - Reconcile also migrates records an older berth wrote: it labelled each record's target
//   (the pulled or imported root document) containerd.io/gc.root, which kept a deleted image's
//   blobs forever. Once the record's lease holds the target, that label goes, but only berth's
//   own (IsOlderBerthsRoot); a gc.root a user set stays.
// Thread-safe as the wrapped store and clients are.

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/content/content_store.h"
#include "lib/images/image_store.h"
#include "lib/leases/lease_manager.h"
#include "lib/snapshots/collector.h"
#include "services/imaged/forwarding_image_store.h"

namespace berth::imaged {

inline constexpr char kImageLeaseLabel[] = "berth.io/image";

// Whether `target`'s containerd.io/gc.root label is the one an older berth put on the root
// document of a record it pulled or imported: its value in that berth's format (RFC 3339 in
// UTC, whole seconds, as absl::RFC3339_sec formats it), written with berth's gc.ref label
// naming the document's first child (.config on a manifest, .m.0 on an index), the document
// last updated within a minute after that time. A gc.root with another value, or one set
// later than the rest (a user's label update), is not.
bool IsOlderBerthsRoot(const content::Info& target, absl::string_view media_type);

// The id of the lease that holds record `name`'s target.
std::string ImageLeaseId(absl::string_view name);

class HoldingImageStore final : public ForwardingImageStore {
 public:
  // The references must outlive this object. `collector` may be null (no snapshot collection
  // is triggered); `content` may be null (no older berth's gc.root is migrated).
  HoldingImageStore(images::ImageStore& store, leases::LeaseManager& leases,
                    snapshots::Collector* collector, content::ContentStore* content = nullptr);
  // Waits for a background collection in progress.
  ~HoldingImageStore() override;
  HoldingImageStore(const HoldingImageStore&) = delete;
  HoldingImageStore& operator=(const HoldingImageStore&) = delete;

  absl::StatusOr<images::Image> Create(const Context& ctx, const images::Image& image) override;
  absl::StatusOr<images::Image> Update(const Context& ctx, const images::Image& image,
                                       const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const Context& ctx, absl::string_view name, bool sync) override;

  // Makes contentd's image leases in each of `namespaces` match the records (see above).
  // Returns how many leases it created, changed or deleted; the first error stops it.
  absl::StatusOr<int> Reconcile(const std::vector<std::string>& namespaces);

 private:
  // Makes `image`'s lease hold exactly its target; returns whether anything changed.
  absl::StatusOr<bool> Hold(const Context& ctx, const images::Image& image);
  // Drops an older berth's gc.root from `image`'s target (its lease holds it already); returns
  // whether it did.
  absl::StatusOr<bool> DropOlderBerthsRoot(const Context& ctx, const images::Image& image);
  // Runs snapshotd's collector in `ns` on the background thread.
  void CollectLater(const std::string& ns);
  void Loop();

  leases::LeaseManager& leases_;
  snapshots::Collector* const collector_;
  content::ContentStore* const content_;
  absl::Mutex mu_;
  std::set<std::string> pending_ ABSL_GUARDED_BY(mu_);  // namespaces to collect
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace berth::imaged
