#pragma once

// imaged's pull: a reference in a registry made into blobs in the content store, a snapshot
// chain (when asked) and an image record, after containerd's client.Pull with its unpacker.
//
// What Pull promises:
// - Everything it writes to the content store and the unpacker is done under a lease it
//   creates on `leases` (labelled kPullLeaseLabel=<reference>, and containerd.io/gc.expire in
//   an hour in case imaged dies; ReleasePullLeases deletes a dead imaged's at start) and deletes
//   before returning, on success and on failure alike. What survives a successful pull is held
//   by labels, as contentd's collector reads them: the root document (index or manifest) is
//   labelled containerd.io/gc.root, an index containerd.io/gc.ref.content.m.<i> for each
//   manifest, a manifest containerd.io/gc.ref.content.config and .l.<i> for its layers, and
//   (unpacking) the config containerd.io/gc.ref.snapshot.<snapshotter> for the top chain id.
//   A failed pull stores its root document last, so nothing it wrote stays rooted.
// - Children are stored before the documents that name them (layers and config, then the
//   manifest, then the index). Blobs the store has already are not downloaded (kExists).
// - Layers are downloaded at most `max_parallel_downloads` at a time, each streamed from the
//   registry into a content ingest and checked against its descriptor's size and digest by the
//   registry client and again by the store's commit; an ingest an earlier pull left is resumed
//   with Range from its offset.
// - Unpacking starts once every layer is in (this slice; issue 10 wants it to overlap), with
//   the chain ids of the config's rootfs.diff_ids (ChainIds below).
// - The record is named by the normalised reference and points at the resolved root document;
//   an existing record of that name gets the new target. No record is touched on failure.
//
// Errors: the registry client's (NotFound carrying the registry's message, Unauthenticated,
// Unavailable, InvalidArgument for a bad document); InvalidArgument for a malformed reference
// or platform; NotFound when an index has no manifest for the platform; the stores' and the
// unpacker's errors; the Context's Cancelled / DeadlineExceeded.
//
// Thread-safe: pulls may run concurrently. `progress` is called from several threads, never at
// the same time.

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

namespace berth::imaged {

struct PullRequest {
  std::string reference;
  std::string platform;  // "os/arch[/variant]"; empty: HostPlatform()
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

struct PullerOptions {
  int max_parallel_downloads = 4;
  // The least bytes between two kDownloading events of one blob.
  int64_t progress_step = 256 << 10;
};

class Puller {
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
  content::ContentStore& content_;
  leases::LeaseManager& leases_;
  snapshots::Unpacker* const unpacker_;
  images::ImageStore& images_;
  const PullerOptions options_;
};

// The label on every pull's lease; its value is the reference pulled.
inline constexpr char kPullLeaseLabel[] = "berth.io/pull";

// Deletes every lease labelled kPullLeaseLabel in each of `namespaces` (what pulls of an imaged
// that died left, so their partial blobs are not protected until the leases expire; contentd's
// ingests stay, for the next pull to resume). Call before serving: a live pull's lease would go
// too. Returns the ids deleted, "<namespace>/<id>"; the first error stops it.
absl::StatusOr<std::vector<std::string>> ReleasePullLeases(
    leases::LeaseManager& leases, const std::vector<std::string>& namespaces);

// containerd's identity.ChainID for each prefix of `diff_ids`: chain[0] = diff_ids[0],
// chain[i] = sha256(chain[i-1] + " " + diff_ids[i]), as "sha256:<hex>" strings.
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

}  // namespace berth::imaged
