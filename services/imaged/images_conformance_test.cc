// image_store_testsuite.h against both implementations: SqliteImageStore directly, and
// GrpcImageStore talking to the real Images service (in-process, on a unix socket in a temp
// dir) over that same kind of store. Passing both proves the wire loses nothing.

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "lib/base/grpc_client.h"
#include "lib/images/grpc_image_store.h"
#include "lib/images/image_store_testsuite.h"
#include "lib/testing/testing.h"
#include "services/imaged/images_service.h"
#include "services/imaged/sqlite_image_store.h"

namespace berth::imaged {
namespace {

std::unique_ptr<SqliteImageStore> OpenStore(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteImageStore>> store = SqliteImageStore::Open(path);
  if (!store.ok()) {
    std::cerr << "SqliteImageStore::Open(" << path << "): " << store.status() << "\n";
    std::abort();
  }
  return *std::move(store);
}

class LocalHarness {
 public:
  images::ImageStore& store() { return *store_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<SqliteImageStore> store_ = OpenStore(dir_.Join("images.db"));
};

class GrpcHarness {
 public:
  GrpcHarness() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("imaged.sock"), grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) {
      std::cerr << "the images service did not start on " << dir_.Join("imaged.sock") << "\n";
      std::abort();
    }
    client_ = std::make_unique<images::GrpcImageStore>(Dial(dir_.Join("imaged.sock")));
  }
  ~GrpcHarness() { server_->Shutdown(); }

  images::ImageStore& store() { return *client_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<SqliteImageStore> local_ = OpenStore(dir_.Join("images.db"));
  ImagesService service_{*local_, ImagesServiceOptions{}};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<images::GrpcImageStore> client_;
};

}  // namespace
}  // namespace berth::imaged

namespace berth::images {

INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, ImageStoreTest, ::testing::Types<imaged::LocalHarness>);
INSTANTIATE_TYPED_TEST_SUITE_P(Grpc, ImageStoreTest, ::testing::Types<imaged::GrpcHarness>);

}  // namespace berth::images
