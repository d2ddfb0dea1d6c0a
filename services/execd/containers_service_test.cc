// What the Containers service adds over its store: the events it publishes (topic, namespace,
// payload; none for a refused request), the default namespace for requests without a header,
// ListStream and List agreeing, and the records gauge.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "containerd/events/container.pb.h"
#include "lib/base/grpc_client.h"
#include "lib/events/recording_publisher.h"
#include "lib/testing/testing.h"
#include "services/execd/containers_service.h"
#include "services/execd/sqlite_container_store.h"

namespace berth::execd {
namespace {

namespace v1 = ::containerd::services::containers::v1;
namespace ev = ::containerd::events;

struct Published {
  std::string ns;
  std::string topic;
  std::string payload;  // the event, in text format
};

// What the tests compare: each recorded event in text format.
class RecordingPublisher : public events::RecordingPublisher {
 public:
  std::vector<Published> published() {
    std::vector<Published> out;
    for (const Record& r : records()) {
      out.push_back({r.ns, r.topic, r.event->ShortDebugString()});
    }
    return out;
  }
};

class ContainersServiceTest : public ::testing::Test {
 protected:
  ContainersServiceTest() {
    ContainersServiceOptions options;
    options.default_namespace = "fallback";
    options.publisher = &publisher_;
    options.registry = registry_;
    options.count = [this] { return store_->Count(); };
    service_ = std::make_unique<ContainersService>(*store_, options);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("execd.sock"), grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = v1::Containers::NewStub(Dial(dir_.Join("execd.sock")));
  }
  ~ContainersServiceTest() override { server_->Shutdown(); }

  static v1::Container Proto(const std::string& id) {
    v1::Container c;
    c.set_id(id);
    (*c.mutable_labels())["k"] = "v";
    c.set_image("docker.io/library/alpine:3.19");
    c.mutable_runtime()->set_name("io.containerd.runc.v2");
    c.mutable_runtime()->mutable_options()->set_type_url("t/opts");
    c.mutable_runtime()->mutable_options()->set_value("o");
    c.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Spec");
    c.mutable_spec()->set_value("{}");
    return c;
  }

  grpc::Status Create(const std::string& ns, const v1::Container& container) {
    grpc::ClientContext context;
    ApplyContext(Context{ns, ""}, &context);
    v1::CreateContainerRequest request;
    *request.mutable_container() = container;
    v1::CreateContainerResponse response;
    return stub_->Create(&context, request, &response);
  }

  std::string Metrics() { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

  testing::TempDir dir_;
  std::unique_ptr<SqliteContainerStore> store_ =
      *SqliteContainerStore::Open(dir_.Join("containers.db"));
  RecordingPublisher publisher_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ContainersService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Containers::Stub> stub_;
};

TEST_F(ContainersServiceTest, PublishesEachChangeInItsNamespace) {
  ASSERT_TRUE(Create("ns1", Proto("web")).ok());
  ASSERT_TRUE(Create("", Proto("db")).ok());  // no header: the default namespace
  {
    grpc::ClientContext context;
    ApplyContext(Context{"ns1", ""}, &context);
    v1::UpdateContainerRequest request;
    *request.mutable_container() = Proto("web");
    (*request.mutable_container()->mutable_labels())["k"] = "w";
    request.mutable_update_mask()->add_paths("labels.k");
    v1::UpdateContainerResponse response;
    ASSERT_TRUE(stub_->Update(&context, request, &response).ok());
  }
  {
    grpc::ClientContext context;
    ApplyContext(Context{"ns1", ""}, &context);
    v1::DeleteContainerRequest request;
    request.set_id("web");
    google::protobuf::Empty response;
    ASSERT_TRUE(stub_->Delete(&context, request, &response).ok());
  }
  ev::ContainerCreate create;
  create.set_id("web");
  create.set_image("docker.io/library/alpine:3.19");
  create.mutable_runtime()->set_name("io.containerd.runc.v2");
  create.mutable_runtime()->mutable_options()->set_type_url("t/opts");
  create.mutable_runtime()->mutable_options()->set_value("o");
  ev::ContainerUpdate update;
  update.set_id("web");
  update.set_image("docker.io/library/alpine:3.19");
  (*update.mutable_labels())["k"] = "w";
  ev::ContainerDelete del;
  del.set_id("web");

  std::vector<Published> published = publisher_.published();
  ASSERT_EQ(published.size(), 4u);
  EXPECT_EQ(published[0].ns, "ns1");
  EXPECT_EQ(published[0].topic, "/containers/create");
  EXPECT_EQ(published[0].payload, create.ShortDebugString());
  EXPECT_EQ(published[1].ns, "fallback");
  EXPECT_EQ(published[1].topic, "/containers/create");
  EXPECT_EQ(published[2].topic, "/containers/update");
  EXPECT_EQ(published[2].payload, update.ShortDebugString());
  EXPECT_EQ(published[3].ns, "ns1");
  EXPECT_EQ(published[3].topic, "/containers/delete");
  EXPECT_EQ(published[3].payload, del.ShortDebugString());
}

TEST_F(ContainersServiceTest, RefusedRequestsPublishNothing) {
  ASSERT_TRUE(Create("ns1", Proto("web")).ok());
  EXPECT_EQ(Create("ns1", Proto("web")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Create("ns1", Proto("bad/id")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::Container no_spec = Proto("nospec");
  no_spec.clear_spec();
  EXPECT_EQ(Create("ns1", no_spec).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create("Bad NS", Proto("x")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext context;
    v1::UpdateContainerRequest request;
    *request.mutable_container() = Proto("web");
    request.mutable_update_mask()->add_paths("runtime");
    v1::UpdateContainerResponse response;
    ApplyContext(Context{"ns1", ""}, &context);
    EXPECT_EQ(stub_->Update(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  grpc::ClientContext context;
  v1::DeleteContainerRequest request;
  request.set_id("missing");
  google::protobuf::Empty response;
  EXPECT_EQ(stub_->Delete(&context, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(publisher_.published().size(), 1u);
  EXPECT_EQ(*store_->Count(), 1);
}

TEST_F(ContainersServiceTest, ListAndListStreamAgree) {
  for (const char* id : {"c", "a", "b"}) {
    ASSERT_TRUE(Create("ns1", Proto(id)).ok());
  }
  grpc::ClientContext list_context;
  ApplyContext(Context{"ns1", ""}, &list_context);
  v1::ListContainersRequest request;
  request.add_filters("id!=b");
  v1::ListContainersResponse response;
  ASSERT_TRUE(stub_->List(&list_context, request, &response).ok());
  ASSERT_EQ(response.containers_size(), 2);
  EXPECT_EQ(response.containers(0).id(), "a");
  EXPECT_EQ(response.containers(1).id(), "c");

  grpc::ClientContext stream_context;
  ApplyContext(Context{"ns1", ""}, &stream_context);
  auto reader = stub_->ListStream(&stream_context, request);
  std::vector<std::string> ids;
  v1::ListContainerMessage message;
  while (reader->Read(&message)) {
    ids.push_back(message.container().id());
    EXPECT_EQ(message.container().spec().value(), "{}");
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "c"}));
}

TEST_F(ContainersServiceTest, RecordsGaugeFollowsCreateAndDelete) {
  EXPECT_TRUE(absl::StrContains(Metrics(), "berth_containers_records 0")) << Metrics();
  ASSERT_TRUE(Create("ns1", Proto("a")).ok());
  ASSERT_TRUE(Create("ns2", Proto("a")).ok());
  EXPECT_TRUE(absl::StrContains(Metrics(), "berth_containers_records 2")) << Metrics();
}

}  // namespace
}  // namespace berth::execd
