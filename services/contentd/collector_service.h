#pragma once

// contentd's berth.content.v1.Collector server (proto/berth/content/v1/collector.proto): one
// full collection of the request's namespace on demand (`berth content gc`). It sees only a
// function, not the store's class. Thread-safe as `collect` is.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "berth/content/v1/collector.grpc.pb.h"

namespace berth::contentd {

struct CollectOutcome {
  std::vector<std::string> removed;  // digests
  int64_t leases_expired = 0;
  int64_t ingests_removed = 0;
};
// Collects namespace `ns` (LocalContentStore::CollectNamespace).
using CollectFn = std::function<absl::StatusOr<CollectOutcome>(const std::string& ns)>;

class CollectorService final : public ::berth::content::v1::Collector::Service {
 public:
  CollectorService(CollectFn collect, std::string default_namespace);
  CollectorService(const CollectorService&) = delete;
  CollectorService& operator=(const CollectorService&) = delete;

  grpc::Status Collect(grpc::ServerContext* server_context,
                       const ::berth::content::v1::CollectRequest* request,
                       ::berth::content::v1::CollectResponse* response) override;

 private:
  const CollectFn collect_;
  const std::string default_namespace_;
};

}  // namespace berth::contentd
