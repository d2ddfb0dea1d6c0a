#include "lib/server/request_context.h"

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/server/daemon.h"

namespace berth::server {
namespace {

using ::testing::StartsWith;

namespace namespaces = containerd::services::namespaces::v1;

// Echoes the Context a call arrives with: the namespace as the name, the lease as a label.
class EchoContextService final : public namespaces::Namespaces::Service {
 public:
  grpc::Status Get(grpc::ServerContext* context, const namespaces::GetNamespaceRequest* request,
                   namespaces::GetNamespaceResponse* response) override {
    absl::StatusOr<Context> ctx = ContextFrom(*context, "fallback");
    if (!ctx.ok()) {
      return ToGrpcStatus(ctx.status());
    }
    response->mutable_namespace_()->set_name(ctx->ns);
    (*response->mutable_namespace_()->mutable_labels())["lease"] = ctx->lease;
    return grpc::Status::OK;
  }
};

class RequestContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-ctx-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config::CommonOptions options;
    options.root = dir_ + "/root";
    options.address = dir_ + "/d.sock";
    daemon_ = std::make_unique<Daemon>(options);
    daemon_->AddService(&service_);
    ASSERT_TRUE(daemon_->Start().ok());
    stub_ = namespaces::Namespaces::NewStub(Dial(options.address));
  }
  void TearDown() override {
    daemon_.reset();
    std::filesystem::remove_all(dir_);
  }

  grpc::Status Get(const std::multimap<std::string, std::string>& metadata,
                   namespaces::GetNamespaceResponse* response) {
    grpc::ClientContext context;
    for (const auto& [key, value] : metadata) {
      context.AddMetadata(key, value);
    }
    return stub_->Get(&context, namespaces::GetNamespaceRequest(), response);
  }

  std::string dir_;
  EchoContextService service_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<namespaces::Namespaces::Stub> stub_;
};

TEST_F(RequestContextTest, MissingNamespaceIsTheDefault) {
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(Get({}, &response).ok());
  EXPECT_EQ(response.namespace_().name(), "fallback");
  EXPECT_EQ(response.namespace_().labels().at("lease"), "");
}

TEST_F(RequestContextTest, EmptyNamespaceIsTheDefault) {
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(Get({{"containerd-namespace", ""}}, &response).ok());
  EXPECT_EQ(response.namespace_().name(), "fallback");
}

TEST_F(RequestContextTest, ReadsNamespaceAndLease) {
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(
      Get({{"containerd-namespace", "k8s.io"}, {"containerd-lease", "1234-abc"}}, &response).ok());
  EXPECT_EQ(response.namespace_().name(), "k8s.io");
  EXPECT_EQ(response.namespace_().labels().at("lease"), "1234-abc");
}

TEST_F(RequestContextTest, ContextTravelsFromApplyContext) {
  grpc::ClientContext context;
  ApplyContext(Context{"team-a", "lease-1"}, &context);
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(stub_->Get(&context, namespaces::GetNamespaceRequest(), &response).ok());
  EXPECT_EQ(response.namespace_().name(), "team-a");
  EXPECT_EQ(response.namespace_().labels().at("lease"), "lease-1");
}

TEST_F(RequestContextTest, BadNamespaceIsInvalidArgument) {
  for (const std::string& ns :
       std::vector<std::string>{"bad..ns", "-x", "a/b", std::string(77, 'a')}) {
    namespaces::GetNamespaceResponse response;
    grpc::Status st = Get({{"containerd-namespace", ns}}, &response);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ns;
    EXPECT_THAT(st.error_message(), StartsWith("namespace \"" + ns + "\" is invalid: ")) << ns;
  }
}

}  // namespace
}  // namespace berth::server
