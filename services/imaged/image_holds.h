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
// Thread-safe as the wrapped store and clients are.

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/images/image_store.h"
#include "lib/leases/lease_manager.h"
#include "lib/snapshots/collector.h"
#include "services/imaged/forwarding_image_store.h"

namespace berth::imaged {

inline constexpr char kImageLeaseLabel[] = "berth.io/image";

// The id of the lease that holds record `name`'s target.
std::string ImageLeaseId(absl::string_view name);

class HoldingImageStore final : public ForwardingImageStore {
 public:
  // The references must outlive this object. `collector` may be null (no snapshot collection
  // is triggered).
  HoldingImageStore(images::ImageStore& store, leases::LeaseManager& leases,
                    snapshots::Collector* collector);
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
  // Runs snapshotd's collector in `ns` on the background thread.
  void CollectLater(const std::string& ns);
  void Loop();

  leases::LeaseManager& leases_;
  snapshots::Collector* const collector_;
  absl::Mutex mu_;
  std::set<std::string> pending_ ABSL_GUARDED_BY(mu_);  // namespaces to collect
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace berth::imaged
