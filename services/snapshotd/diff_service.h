#pragma once

// snapshotd's containerd.services.diff.v1.Diff server: a thin layer over any diff::Applier and
// diff::Comparer (it never sees their classes). Each handler reads the namespace and lease from
// the request metadata, validates its input, calls the applier or comparer, and converts the
// error once. ApplyRequest.payloads (containerd's stream-processor payloads) are not supported:
// a request carrying any is InvalidArgument rather than silently ignored.
//
// Thread-safe: gRPC calls the handlers concurrently; the Applier and Comparer must be too.

#include <string>

#include "containerd/services/diff/v1/diff.grpc.pb.h"
#include "lib/diff/diff.h"

namespace berth::snapshotd {

class DiffService final : public ::containerd::services::diff::v1::Diff::Service {
 public:
  // `applier` and `comparer` must outlive the service. `default_namespace` serves requests
  // without a `containerd-namespace` header.
  DiffService(diff::Applier& applier, diff::Comparer& comparer, std::string default_namespace);
  DiffService(const DiffService&) = delete;
  DiffService& operator=(const DiffService&) = delete;

  grpc::Status Apply(grpc::ServerContext* server_context,
                     const ::containerd::services::diff::v1::ApplyRequest* request,
                     ::containerd::services::diff::v1::ApplyResponse* response) override;
  grpc::Status Diff(grpc::ServerContext* server_context,
                    const ::containerd::services::diff::v1::DiffRequest* request,
                    ::containerd::services::diff::v1::DiffResponse* response) override;

 private:
  diff::Applier& applier_;
  diff::Comparer& comparer_;
  const std::string default_namespace_;
};

}  // namespace berth::snapshotd
