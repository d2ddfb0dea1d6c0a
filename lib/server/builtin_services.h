#pragma once

// The services every daemon serves besides its own (DESIGN.md): containerd's Version and
// Introspection. grpc.health.v1.Health is grpc's own default health service (see daemon.cc).

#include <string>
#include <vector>

#include "containerd/services/introspection/v1/introspection.grpc.pb.h"
#include "containerd/services/version/v1/version.grpc.pb.h"
#include "lib/server/daemon.h"

namespace berth::server {

// Version: berth's release and git revision (lib/server/version.h).
class VersionService final : public containerd::services::version::v1::Version::Service {
 public:
  grpc::Status Version(grpc::ServerContext* context, const google::protobuf::Empty* request,
                       containerd::services::version::v1::VersionResponse* response) override;
};

// Introspection: the plugins a daemon registered and the server's persistent uuid. Both are
// fixed before the server starts, so calls need no locking.
class IntrospectionService final
    : public containerd::services::introspection::v1::Introspection::Service {
 public:
  IntrospectionService(std::vector<PluginInfo> plugins, std::string uuid);

  // Filters use containerd's syntax, reduced to what plugins have: `type` and `id` compared
  // with `==` or `!=`, or named alone (present); a filter's comma-separated terms must all
  // match, and a plugin is returned if any filter matches. Anything else is InvalidArgument.
  grpc::Status Plugins(grpc::ServerContext* context,
                       const containerd::services::introspection::v1::PluginsRequest* request,
                       containerd::services::introspection::v1::PluginsResponse* response) override;
  grpc::Status Server(grpc::ServerContext* context, const google::protobuf::Empty* request,
                      containerd::services::introspection::v1::ServerResponse* response) override;

 private:
  const std::vector<PluginInfo> plugins_;
  const std::string uuid_;
};

}  // namespace berth::server
