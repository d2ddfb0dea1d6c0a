// content_store_testsuite.h against both implementations: LocalContentStore directly, and
// GrpcContentStore talking to the real Content service (in-process, on a unix socket in a temp
// dir) over that same kind of store. Passing both proves the wire loses nothing.

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "lib/base/grpc_client.h"
#include "lib/content/content_service.h"
#include "lib/content/content_store_testsuite.h"
#include "lib/content/grpc_content_store.h"
#include "lib/testing/testing.h"
#include "services/contentd/local_content_store.h"

namespace berth::contentd {
namespace {

using content::ContentService;
using content::ContentServiceOptions;
using content::ContentStats;

std::unique_ptr<LocalContentStore> OpenLocal(const std::string& root) {
  StoreOptions options;
  options.root = root;
  options.lease_expiry_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<LocalContentStore>> store = LocalContentStore::Open(options);
  if (!store.ok()) {
    std::cerr << "LocalContentStore::Open(" << root << "): " << store.status() << "\n";
    std::abort();
  }
  return *std::move(store);
}

class LocalHarness {
 public:
  LocalHarness() : store_(OpenLocal(dir_.Join("root"))) {}
  content::ContentStore& store() { return *store_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<LocalContentStore> store_;
};

class GrpcHarness {
 public:
  GrpcHarness()
      : local_(OpenLocal(dir_.Join("root"))),
        service_(*local_, ContentServiceOptions{"default", registry_, [this] {
                                                  StoreStats s = local_->Stats();
                                                  return ContentStats{s.blobs, s.bytes};
                                                }}) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("content.sock"),
                             grpc::InsecureServerCredentials());
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) {
      ADD_FAILURE() << "the content service did not start on " << dir_.Join("content.sock");
      std::abort();
    }
    client_ = std::make_unique<content::GrpcContentStore>(Dial(dir_.Join("content.sock")));
  }
  ~GrpcHarness() { server_->Shutdown(); }

  content::ContentStore& store() { return *client_; }

 private:
  testing::TempDir dir_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<LocalContentStore> local_;
  ContentService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<content::GrpcContentStore> client_;
};

}  // namespace
}  // namespace berth::contentd

namespace berth::content {

INSTANTIATE_TYPED_TEST_SUITE_P(Local, ContentStoreTest, ::testing::Types<contentd::LocalHarness>);
INSTANTIATE_TYPED_TEST_SUITE_P(Grpc, ContentStoreTest, ::testing::Types<contentd::GrpcHarness>);

}  // namespace berth::content
