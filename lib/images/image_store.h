#pragma once

// The image store contract (after containerd's images/image.go Store): named records, each
// pointing at the root descriptor of an image (an index or a manifest) in the content store.
// A store keeps records only; it neither reads nor protects the content a target names
// (a record whose target is absent from contentd is legal, as in containerd).
// imaged's SqliteImageStore and GrpcImageStore (this folder, over any containerd Images
// service) implement it and both pass image_store_testsuite.h.
//
// Terms: an image's `name` is the key of its record in ctx.ns (usually a normalised reference,
// "docker.io/library/alpine:3.19", but any name that passes ValidateImageName). `target` is the
// descriptor the name resolves to; a store keeps its media type, digest, size and annotations.
//
// Every call is served in ctx.ns: a malformed namespace is InvalidArgument. Thread-safe.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/base/labels.h"
#include "lib/filters/filter.h"
#include "lib/oci/descriptor.h"

namespace berth::images {

struct Image {
  std::string name;
  LabelMap labels;
  oci::Descriptor target;
  absl::Time created_at = absl::UnixEpoch();  // set by the store
  absl::Time updated_at = absl::UnixEpoch();  // set by the store
};

class ImageStore {
 public:
  virtual ~ImageStore() = default;

  // NotFound if `name` has no record in ctx.ns.
  virtual absl::StatusOr<Image> Get(const Context& ctx, absl::string_view name) = 0;

  // The records in ctx.ns that match any of `filters` (containerd's syntax, lib/filters; none
  // matches everything), sorted by name. Fields: name, target.digest, target.mediatype,
  // labels.<key>, annotations.<key> (the target's). A malformed filter is InvalidArgument.
  virtual absl::StatusOr<std::vector<Image>> List(const Context& ctx,
                                                  const std::vector<std::string>& filters) = 0;

  // Stores `image` with created_at = updated_at = now and returns what was stored.
  // InvalidArgument if ValidateImage refuses it; AlreadyExists if the name is taken in ctx.ns.
  virtual absl::StatusOr<Image> Create(const Context& ctx, const Image& image) = 0;

  // Changes the record named image.name as ApplyImageUpdate says for `fieldpaths`, sets
  // updated_at = now (created_at is kept), and returns the result. InvalidArgument for an empty
  // name, a field path that cannot be updated, or a result ValidateImage refuses; NotFound if
  // there is no such record. On any error the record is unchanged.
  virtual absl::StatusOr<Image> Update(const Context& ctx, const Image& image,
                                       const std::vector<std::string>& fieldpaths) = 0;

  // Removes the record. NotFound if absent. `sync` asks the store to return only once what
  // the record alone kept alive has been collected (containerd's SynchronousDelete); a store
  // that holds nothing for its records (imaged today) has nothing to wait for.
  virtual absl::Status Delete(const Context& ctx, absl::string_view name, bool sync) = 0;
};

// A name is 1 to 4096 bytes with no ASCII control character (containerd only refuses the
// empty name; a control character or an unbounded name is never a reference and would break
// ctr's tables and the event subjects' payloads). InvalidArgument otherwise.
absl::Status ValidateImageName(absl::string_view name);

// containerd's metadata validateImage: a valid name, labels that pass ValidateLabels, and a
// target with a well-formed digest, a size above zero and a media type. InvalidArgument,
// naming the image and the field.
absl::Status ValidateImage(const Image& image);

// Applies an update to `current` as containerd's metadata image store does. Empty
// `fieldpaths` replaces everything but the name and timestamps with `given`'s. Otherwise per
// path: "labels" replaces the labels; "labels.<key>" sets that label from `given` (removing it
// when `given` has none or an empty value); "annotations" and "annotations.<key>" do the same
// for the target's annotations; "target" replaces the target as a whole (annotations too).
// Any other path (a target's part such as "target.digest", "name", "created_at") is
// InvalidArgument: cannot update "<path>" field on image "<name>". Empty label and annotation
// values are dropped. The result is not validated (ValidateImage is the caller's next step).
// On error `*current` is unchanged.
absl::Status ApplyImageUpdate(Image* current, const Image& given,
                              const std::vector<std::string>& fieldpaths);

// The filter fields of `image` (see ImageStore::List). `image` must outlive the adaptor.
filters::Adaptor ImageAdaptor(const Image& image);

}  // namespace berth::images
