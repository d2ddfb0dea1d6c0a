#pragma once

// imaged's push: an image record's content in the content store made into a manifest (or an
// index and its manifests) in a registry repository, tagged, after containerd's remotes.Push.
//
// What Push promises:
// - It walks the record's target: an index, its manifests, and each manifest's config and
//   layers, all read from the content store. Every blob the walk names must be there; one that
//   is not fails the push before anything is sent (FailedPrecondition naming the blob and the
//   image: a pull of one platform of an index keeps only that platform's manifest).
// - Children go before the documents that name them: blobs (config and layers, at most
//   `max_parallel_uploads` at a time), then manifests by digest, then the root document by the
//   reference's tag (or digest). A blob the repository has already is not sent (kExists); one
//   the registry holds in another repository of the record's own registry, or of a repository
//   named by the blob's containerd.io/distribution.source.<host> label, is mounted from there
//   when the registry allows it (kMounted), else uploaded (kUploading ... kDone). A document the
//   repository has already (the tag naming the same digest, for the root) is not sent either.
// - After a successful push each blob is labelled containerd.io/distribution.source.<host> with
//   the repository added (containerd's label), so a later push to another repository of that
//   registry mounts it.
//
// Errors: NotFound for an unknown image; InvalidArgument for a malformed reference; the
// FailedPrecondition above; the registry client's errors (Unauthenticated naming the registry
// for refused credentials); the Context's Cancelled / DeadlineExceeded.
//
// Thread-safe: pushes may run concurrently. `progress` is called from several threads, never at
// the same time.

#include <string>

#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/content/content_store.h"
#include "lib/images/image_store.h"
#include "lib/images/oci.h"
#include "lib/images/registry_client.h"
#include "services/imaged/puller.h"

namespace berth::imaged {

struct PushRequest {
  std::string name;       // the image record to push
  std::string reference;  // where to; empty: the record's name
};

struct PusherOptions {
  int max_parallel_uploads = 4;
  // The least bytes between two kUploading events of one blob.
  int64_t progress_step = 256 << 10;
};

// containerd's label naming the repositories of a registry that hold a blob:
// "containerd.io/distribution.source.<host>" = "repo/a,repo/b".
inline constexpr char kDistributionSourceLabel[] = "containerd.io/distribution.source.";

class Pusher {
 public:
  // Both references must outlive the Pusher.
  Pusher(content::ContentStore& content, images::ImageStore& images, PusherOptions options = {});
  Pusher(const Pusher&) = delete;
  Pusher& operator=(const Pusher&) = delete;

  // Pushes with `registry` in ctx.ns. Returns the root descriptor pushed and the normalised
  // reference it was pushed to.
  struct Result {
    std::string reference;
    images::Descriptor target;
  };
  absl::StatusOr<Result> Push(const Context& ctx, images::RegistryClient& registry,
                              const PushRequest& request, const BlobEventFn& progress = nullptr);

 private:
  content::ContentStore& content_;
  images::ImageStore& images_;
  const PusherOptions options_;
};

}  // namespace berth::imaged
