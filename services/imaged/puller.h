#pragma once

// imaged's pull: a reference in a registry made into blobs in the content store, a snapshot
// chain (when asked) and an image record, after containerd's client.Pull with its unpacker.
//
// What Pull promises:
// - Everything it writes to the content store and the unpacker is done under a lease it
//   creates on `leases` (labelled kPullLeaseLabel=<reference>, and containerd.io/gc.expire in
//   an hour in case imaged dies; ReleasePullLeases deletes a dead imaged's at start) and deletes
//   before returning, on success and on failure alike. What survives a successful pull is held
//   by the record's lease (image_holds.h) on the root document (index or manifest) and by
//   labels, as contentd's collector reads them: an index containerd.io/gc.ref.content.m.<i> for
//   each manifest, a manifest containerd.io/gc.ref.content.config and .l.<i> for its layers, and
//   (unpacking) the config containerd.io/gc.ref.snapshot.<snapshotter> for the top chain id.
//   A failed pull leaves no record, so nothing it wrote stays held.
// - Children are stored before the documents that name them (layers and config, then the
//   manifest, then the index). Blobs the store has already are not downloaded (kExists).
// - Layers are downloaded at most `max_parallel_downloads` at a time, each streamed from the
//   registry into a content ingest and checked against its descriptor's size and digest by the
//   registry client and again by the store's commit; an ingest an earlier pull left is resumed
//   with Range from its offset. Concurrent pulls share downloads: a blob one pull is
//   downloading is waited for by the others (DownloadFlights), which then report kExists.
// - Unpacking overlaps the download: an unpack session (Unpacker::Start, with the chain ids of
//   the config's rootfs.diff_ids: images::ChainIds, lib/images/oci.h) is told of each layer as
//   soon as it is in the store, so a layer's apply starts while the layers above it still download; the chain
//   is committed bottom-up and exists when Pull returns; an existing prefix is reused. On any
//   failure (a download, an apply, the caller leaving) the session is dropped, which removes
//   every snapshot this pull created, before Pull returns.
// - The record is named by the normalised reference and points at the resolved root document;
//   an existing record of that name gets the new target. No record is touched on failure.
//
// Errors: the registry client's (NotFound carrying the registry's message, Unauthenticated,
// Unavailable, InvalidArgument for a bad document); InvalidArgument for a malformed reference
// or platform; NotFound when an index has no manifest for the platform; the stores' and the
// unpacker's errors; the Context's Cancelled / DeadlineExceeded.
//
// Thread-safe: pulls may run concurrently. `progress` is called from several threads, never at
// the same time. Per blob the states come in order: kWaiting, kDownloading.., kVerifying (or
// kExists), then for an unpacked layer kUnpacking (its apply began) and kDone (committed).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/content/content_store.h"
#include "lib/images/image_store.h"
#include "lib/images/registry_client.h"
#include "lib/leases/lease_manager.h"
#include "lib/snapshots/unpacker.h"
#include "services/imaged/download_flights.h"
#include "services/imaged/image_stores.h"

namespace berth::imaged {

struct PullRequest {
  std::string reference;
  std::string platform;  // "os/arch[/variant]"; empty: HostPlatform()
  // Also every other manifest of an index, with its config and layers (not unpacked; only
  // `platform`'s is, when it is in the index).
  bool all_platforms = false;
  bool unpack = true;
  std::string snapshotter = "overlayfs";  // names the gc.ref.snapshot label
};

// One blob's state change (the wire's berth.distribution.v1.BlobProgress).
struct BlobEvent {
  enum class State {
    kWaiting,
    kDownloading,
    kVerifying,
    kUnpacking,
    kDone,
    kExists,
    kUploading,  // a push: bytes going to the registry (offset of total)
    kMounted,    // a push: the registry mounted it from another repository; nothing sent
  };
  Digest digest;
  std::string media_type;
  int64_t offset = 0;
  int64_t total = 0;
  State state = State::kWaiting;
};
using BlobEventFn = std::function<void(const BlobEvent&)>;

// Downloads are network-bound, not CPU-bound: two per CPU, at least 4 and at most 16.
int DefaultParallelDownloads();

struct PullerOptions {
  int max_parallel_downloads = DefaultParallelDownloads();
  // The least bytes between two kDownloading events of one blob.
  int64_t progress_step = 256 << 10;
};

class Puller : private ImageStores {
 public:
  // Every reference must outlive the Puller. `unpacker` may be null (pulls that ask to unpack
  // then fail with FailedPrecondition).
  Puller(content::ContentStore& content, leases::LeaseManager& leases,
         snapshots::Unpacker* unpacker, images::ImageStore& images, PullerOptions options = {});
  Puller(const Puller&) = delete;
  Puller& operator=(const Puller&) = delete;

  // Pulls with `registry` in ctx.ns (ctx.lease is replaced by the pull's own lease).
  absl::StatusOr<images::Image> Pull(const Context& ctx, images::RegistryClient& registry,
                                     const PullRequest& request,
                                     const BlobEventFn& progress = nullptr);

 private:
  const PullerOptions options_;
  DownloadFlights flights_;  // shared by this Puller's pulls: one download per blob
};

// The label on every pull's lease; its value is the reference pulled.
inline constexpr char kPullLeaseLabel[] = "berth.io/pull";

// Deletes every lease labelled kPullLeaseLabel in each of `namespaces` (what pulls of an imaged
// that died left, so their partial blobs are not protected until the leases expire). Their
// ingests stay in `content`, unleased (contentd's ingest expiry then applies), for the next
// pull to resume with Range: each is held open on a writer while its lease goes, since contentd
// collects an ingest its deleted lease alone held otherwise. Call before serving: a live pull's
// lease would go too. Returns the ids deleted, "<namespace>/<id>"; the first error stops it.
absl::StatusOr<std::vector<std::string>> ReleasePullLeases(
    leases::LeaseManager& leases, content::ContentStore& content,
    const std::vector<std::string>& namespaces);

}  // namespace berth::imaged
