#pragma once

// The container store contract (after containerd's containers/containers.go Store): one
// metadata record per container, what execd runs a task from. A store keeps records only; it
// neither reads the image nor checks the snapshot a record names, and it keeps the spec and
// every Any exactly as sent (containerd's clients send their own spec; berth's CLI sends one
// made by lib/oci). execd's SqliteContainerStore and GrpcContainerStore (this folder, over any
// containerd Containers service) implement it and both pass container_store_testsuite.h.
//
// Terms: a container's `id` is the key of its record in ctx.ns. Its `spec` is an OCI runtime
// spec carried as an Any (type_url "types.containerd.io/opencontainers/runtime-spec/1/Spec",
// JSON bytes); the store never parses it.
//
// Not here yet: containerd 1.7's `sandbox` field (the proto berth carries is 1.6's, which ctr
// 1.6 speaks). Every call is served in ctx.ns: a malformed namespace is InvalidArgument.
// Thread-safe.

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/base/labels.h"
#include "lib/filters/filter.h"

namespace berth::containers {

// A google.protobuf.Any without protobuf: a type URL and the message's bytes, kept as sent.
// An Any with an empty type_url and value is "not set" (the proto field absent).
struct Any {
  std::string type_url;
  std::string value;

  bool IsSet() const { return !type_url.empty() || !value.empty(); }
  bool operator==(const Any& other) const {
    return type_url == other.type_url && value == other.value;
  }
  bool operator!=(const Any& other) const { return !(*this == other); }
};

struct Runtime {
  std::string name;  // e.g. "io.containerd.runc.v2"; required
  Any options;       // runtime-specific, optional
};

struct Container {
  std::string id;
  LabelMap labels;
  std::string image;  // the image reference it was made from; free text, may be empty
  Runtime runtime;
  Any spec;  // required
  std::string snapshotter;
  std::string snapshot_key;  // the rootfs snapshot's key in `snapshotter`
  std::map<std::string, Any> extensions;
  absl::Time created_at = absl::UnixEpoch();  // set by the store
  absl::Time updated_at = absl::UnixEpoch();  // set by the store
};

class ContainerStore {
 public:
  virtual ~ContainerStore() = default;

  // NotFound if `id` has no record in ctx.ns.
  virtual absl::StatusOr<Container> Get(const Context& ctx, absl::string_view id) = 0;

  // The records in ctx.ns that match any of `filters` (containerd's syntax, lib/filters; none
  // matches everything), sorted by id. Fields: id, image, runtime.name, labels.<key>, and
  // snapshotter (a berth addition: containerd 1.6's adaptor has no snapshotter field, so there
  // such a filter matches nothing). A malformed filter is InvalidArgument.
  virtual absl::StatusOr<std::vector<Container>> List(const Context& ctx,
                                                      const std::vector<std::string>& filters) = 0;

  // Stores `container` with created_at = updated_at = now and returns what was stored.
  // InvalidArgument if ValidateContainer refuses it; AlreadyExists if the id is taken in ctx.ns.
  virtual absl::StatusOr<Container> Create(const Context& ctx, const Container& container) = 0;

  // Changes the record container.id as ApplyContainerUpdate says for `fieldpaths`, sets
  // updated_at = now (created_at is kept) and returns the result. InvalidArgument for an empty
  // id, a refused path or change, or a result ValidateContainer refuses; NotFound if there is
  // no such record. On any error the record is unchanged.
  virtual absl::StatusOr<Container> Update(const Context& ctx, const Container& container,
                                           const std::vector<std::string>& fieldpaths) = 0;

  // Removes the record. NotFound if absent. The snapshot and any task are the caller's.
  virtual absl::Status Delete(const Context& ctx, absl::string_view id) = 0;
};

// containerd's metadata validateContainer: id a valid identifier (ValidateIdentifier),
// extension keys non-empty, labels that pass ValidateLabels, a runtime name, a spec, and a
// snapshotter whenever a snapshot key is set. InvalidArgument, naming the container and field.
absl::Status ValidateContainer(const Container& container);

// Applies an update to `current` as containerd's metadata container store does. Empty
// `fieldpaths` means "labels", "spec", "extensions", "image" and "snapshotkey", and then a
// `given` whose snapshotter or runtime name differs from the record's is InvalidArgument
// (those fields are immutable). Per path: "labels" and "extensions" replace the map;
// "labels.<key>" and "extensions.<key>" copy that key from `given` (a label absent or empty
// in `given` is removed; an extension absent in `given` is removed); "spec", "image" and
// "snapshotkey" replace the field. Any other path ("runtime", "snapshotter", "id", ...) is
// InvalidArgument: cannot update "<path>" field on "<id>". Empty label values are dropped,
// as containerd's bolt store drops them. The result is not validated (ValidateContainer is the
// caller's next step). On error `*current` is unchanged.
absl::Status ApplyContainerUpdate(Container* current, const Container& given,
                                  const std::vector<std::string>& fieldpaths);

// The filter fields of `container` (see ContainerStore::List). It must outlive the adaptor.
filters::Adaptor ContainerAdaptor(const Container& container);

}  // namespace berth::containers
