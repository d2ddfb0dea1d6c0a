#include "lib/server/request_context.h"

#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/server/daemon.h"

namespace berth::server {
namespace {

using ::testing::StartsWith;

namespace namespaces = containerd::services::namespaces::v1;

// Echoes the Context a call arrives with: the namespace as the name, the lease and whether a
// deadline came as labels. A Get of the name "wait" instead works until its Context says the
// caller is gone (at most 10 s) and records what Alive() said.
class EchoContextService final : public namespaces::Namespaces::Service {
 public:
  grpc::Status Get(grpc::ServerContext* context, const namespaces::GetNamespaceRequest* request,
                   namespaces::GetNamespaceResponse* response) override {
    absl::StatusOr<Context> ctx = ContextFrom(*context, "fallback");
    if (!ctx.ok()) {
      return ToGrpcStatus(ctx.status());
    }
    if (request->name() == "wait") {
      absl::Time give_up = absl::Now() + absl::Seconds(10);
      absl::Status alive;
      while ((alive = ctx->Alive()).ok() && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      absl::MutexLock lock(&mu_);
      seen_ = alive;
      return ToGrpcStatus(alive);
    }
    response->mutable_namespace_()->set_name(ctx->ns);
    (*response->mutable_namespace_()->mutable_labels())["lease"] = ctx->lease;
    (*response->mutable_namespace_()->mutable_labels())["proxy_consumer"] =
        ctx->proxy_consumer ? "true" : "false";
    (*response->mutable_namespace_()->mutable_labels())["deadline"] =
        ctx->deadline == absl::InfiniteFuture() ? "none" : absl::FormatTime(ctx->deadline);
    return grpc::Status::OK;
  }

  // What the last "wait" call's Context said once it stopped; nullopt before one stopped.
  std::optional<absl::Status> WaitForSeen(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](std::optional<absl::Status>* s) { return s->has_value(); },
                             &seen_),
                         timeout);
    std::optional<absl::Status> seen = seen_;
    seen_.reset();
    return seen;
  }

 private:
  absl::Mutex mu_;
  std::optional<absl::Status> seen_ ABSL_GUARDED_BY(mu_);
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
  EXPECT_EQ(response.namespace_().labels().at("proxy_consumer"), "true");
}

TEST_F(RequestContextTest, EmptyNamespaceIsTheDefault) {
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(Get({{"containerd-namespace", ""}}, &response).ok());
  EXPECT_EQ(response.namespace_().name(), "fallback");
  EXPECT_EQ(response.namespace_().labels().at("proxy_consumer"), "true");
}

TEST_F(RequestContextTest, ReadsNamespaceAndLease) {
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(
      Get({{"containerd-namespace", "k8s.io"}, {"containerd-lease", "1234-abc"}}, &response).ok());
  EXPECT_EQ(response.namespace_().name(), "k8s.io");
  EXPECT_EQ(response.namespace_().labels().at("lease"), "1234-abc");
  EXPECT_EQ(response.namespace_().labels().at("proxy_consumer"), "false");
}

TEST_F(RequestContextTest, ContextTravelsFromApplyContext) {
  grpc::ClientContext context;
  ApplyContext(Context{"team-a", "lease-1"}, &context);
  namespaces::GetNamespaceResponse response;
  ASSERT_TRUE(stub_->Get(&context, namespaces::GetNamespaceRequest(), &response).ok());
  EXPECT_EQ(response.namespace_().name(), "team-a");
  EXPECT_EQ(response.namespace_().labels().at("lease"), "lease-1");
}

TEST_F(RequestContextTest, DeadlineTravelsAndEndsTheServersWork) {
  Context ctx{"team-a", ""};
  ctx.deadline = absl::Now() + absl::Seconds(30);
  {
    grpc::ClientContext context;
    ApplyContext(ctx, &context);
    namespaces::GetNamespaceResponse response;
    ASSERT_TRUE(stub_->Get(&context, namespaces::GetNamespaceRequest(), &response).ok());
    // The server's deadline is the client's (gRPC sends it as a timeout, so allow its rounding).
    absl::Time seen;
    std::string err;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, response.namespace_().labels().at("deadline"),
                                &seen, &err))
        << response.namespace_().labels().at("deadline");
    EXPECT_LT(absl::AbsDuration(seen - ctx.deadline), absl::Seconds(1));
  }
  {
    grpc::ClientContext context;
    ApplyContext(Context{"team-a", ""}, &context);
    namespaces::GetNamespaceResponse response;
    ASSERT_TRUE(stub_->Get(&context, namespaces::GetNamespaceRequest(), &response).ok());
    EXPECT_EQ(response.namespace_().labels().at("deadline"), "none");
  }
  // A short deadline: the handler's Context turns DeadlineExceeded and its work stops.
  grpc::ClientContext context;
  ApplyContext(Context{"team-a", ""}.WithTimeout(absl::Milliseconds(300)), &context);
  namespaces::GetNamespaceRequest wait;
  wait.set_name("wait");
  namespaces::GetNamespaceResponse response;
  EXPECT_EQ(stub_->Get(&context, wait, &response).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  std::optional<absl::Status> seen = service_.WaitForSeen(absl::Seconds(10));
  ASSERT_TRUE(seen.has_value()) << "the handler did not stop";
  // Past the deadline gRPC may cancel the call before the handler's own clock says so.
  EXPECT_TRUE(absl::IsDeadlineExceeded(*seen) || absl::IsCancelled(*seen)) << *seen;
}

TEST_F(RequestContextTest, HandlerSeesItsCallerLeave) {
  grpc::ClientContext context;
  ApplyContext(Context{"team-a", ""}, &context);
  namespaces::GetNamespaceRequest wait;
  wait.set_name("wait");
  namespaces::GetNamespaceResponse response;
  grpc::Status status;
  absl::Notification done;
  stub_->async()->Get(&context, &wait, &response, [&](grpc::Status s) {
    status = s;
    done.Notify();
  });
  absl::SleepFor(absl::Milliseconds(200));  // let the handler start waiting
  context.TryCancel();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  std::optional<absl::Status> seen = service_.WaitForSeen(absl::Seconds(10));
  ASSERT_TRUE(seen.has_value()) << "the handler did not see its caller leave";
  EXPECT_TRUE(absl::IsCancelled(*seen)) << *seen;
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
