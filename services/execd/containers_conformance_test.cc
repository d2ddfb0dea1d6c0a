// container_store_testsuite.h against both implementations: SqliteContainerStore directly, and
// GrpcContainerStore talking to the real Containers service (in-process, on a unix socket in a temp
// dir) over that same kind of store. Passing both proves the wire loses nothing.

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "lib/base/grpc_client.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/containers/container_store_testsuite.h"
#include "lib/testing/testing.h"
#include "services/execd/containers_service.h"
#include "services/execd/sqlite_container_store.h"

namespace berth::execd {
namespace {

std::unique_ptr<SqliteContainerStore> OpenStore(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteContainerStore>> store = SqliteContainerStore::Open(path);
  if (!store.ok()) {
    std::cerr << "SqliteContainerStore::Open(" << path << "): " << store.status() << "\n";
    std::abort();
  }
  return *std::move(store);
}

class LocalHarness {
 public:
  containers::ContainerStore& store() { return *store_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<SqliteContainerStore> store_ = OpenStore(dir_.Join("containers.db"));
};

class GrpcHarness {
 public:
  GrpcHarness() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("execd.sock"), grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) {
      std::cerr << "the containers service did not start on " << dir_.Join("execd.sock") << "\n";
      std::abort();
    }
    client_ = std::make_unique<containers::GrpcContainerStore>(Dial(dir_.Join("execd.sock")));
  }
  ~GrpcHarness() { server_->Shutdown(); }

  containers::ContainerStore& store() { return *client_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<SqliteContainerStore> local_ = OpenStore(dir_.Join("containers.db"));
  ContainersService service_{*local_, ContainersServiceOptions{}};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<containers::GrpcContainerStore> client_;
};

}  // namespace
}  // namespace berth::execd

namespace berth::containers {

INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, ContainerStoreTest, ::testing::Types<execd::LocalHarness>);
INSTANTIATE_TYPED_TEST_SUITE_P(Grpc, ContainerStoreTest, ::testing::Types<execd::GrpcHarness>);

}  // namespace berth::containers
