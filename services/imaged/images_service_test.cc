// What the Images service adds over its store: the events it publishes (topic, namespace,
// payload; none for a refused request), the default namespace for requests without a header,
// bad input on the wire (a malformed target digest), and the records gauge.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "containerd/events/image.pb.h"
#include "lib/base/digest.h"
#include "lib/base/grpc_client.h"
#include "lib/events/recording_publisher.h"
#include "lib/testing/testing.h"
#include "services/imaged/images_service.h"
#include "services/imaged/publishing_image_store.h"
#include "services/imaged/sqlite_image_store.h"

namespace berth::imaged {
namespace {

namespace v1 = ::containerd::services::images::v1;

struct Published {
  std::string ns;
  std::string topic;
  std::string name;
  std::map<std::string, std::string> labels;
};

// What the tests compare: each recorded image event's name and labels.
class RecordingPublisher : public events::RecordingPublisher {
 public:
  std::vector<Published> published() {
    std::vector<Published> out;
    for (const Record& r : records()) {
      Published p{r.ns, r.topic, "", {}};
      if (const auto* create = dynamic_cast<const v1::ImageCreate*>(r.event.get())) {
        p.name = create->name();
        p.labels = {create->labels().begin(), create->labels().end()};
      } else if (const auto* update = dynamic_cast<const v1::ImageUpdate*>(r.event.get())) {
        p.name = update->name();
        p.labels = {update->labels().begin(), update->labels().end()};
      } else if (const auto* del = dynamic_cast<const v1::ImageDelete*>(r.event.get())) {
        p.name = del->name();
      }
      out.push_back(std::move(p));
    }
    return out;
  }
};

class ImagesServiceTest : public ::testing::Test {
 protected:
  ImagesServiceTest() {
    ImagesServiceOptions options;
    options.default_namespace = "fallback";
    options.publisher = &publisher_;
    options.registry = registry_;
    options.count = [this] { return store_->Count(); };
    service_ = std::make_unique<ImagesService>(*store_, options);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("imaged.sock"), grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = v1::Images::NewStub(Dial(dir_.Join("imaged.sock")));
  }
  ~ImagesServiceTest() override { server_->Shutdown(); }

  static v1::Image Proto(const std::string& name, const std::string& digest) {
    v1::Image image;
    image.set_name(name);
    (*image.mutable_labels())["k"] = "v";
    image.mutable_target()->set_media_type("application/vnd.oci.image.index.v1+json");
    image.mutable_target()->set_digest(digest);
    image.mutable_target()->set_size(10);
    return image;
  }

  grpc::Status Create(const std::string& ns, const v1::Image& image) {
    grpc::ClientContext context;
    ApplyContext(Context{ns, ""}, &context);
    v1::CreateImageRequest request;
    *request.mutable_image() = image;
    v1::CreateImageResponse response;
    return stub_->Create(&context, request, &response);
  }

  std::string Metrics() {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteImageStore> store_ = *SqliteImageStore::Open(dir_.Join("images.db"));
  RecordingPublisher publisher_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ImagesService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Images::Stub> stub_;
};

TEST_F(ImagesServiceTest, PublishesEachChangeInItsNamespace) {
  const std::string digest = Sha256Of("x").ToString();
  ASSERT_TRUE(Create("ns1", Proto("app:1", digest)).ok());
  ASSERT_TRUE(Create("", Proto("app:2", digest)).ok());  // no header: the default namespace
  {
    grpc::ClientContext context;
    ApplyContext(Context{"ns1", ""}, &context);
    v1::UpdateImageRequest request;
    *request.mutable_image() = Proto("app:1", digest);
    (*request.mutable_image()->mutable_labels())["k"] = "w";
    request.mutable_update_mask()->add_paths("labels.k");
    v1::UpdateImageResponse response;
    ASSERT_TRUE(stub_->Update(&context, request, &response).ok());
  }
  {
    grpc::ClientContext context;
    ApplyContext(Context{"ns1", ""}, &context);
    v1::DeleteImageRequest request;
    request.set_name("app:1");
    google::protobuf::Empty response;
    ASSERT_TRUE(stub_->Delete(&context, request, &response).ok());
  }
  std::vector<Published> published = publisher_.published();
  ASSERT_EQ(published.size(), 4u);
  EXPECT_EQ(published[0].ns, "ns1");
  EXPECT_EQ(published[0].topic, "/images/create");
  EXPECT_EQ(published[0].name, "app:1");
  EXPECT_EQ(published[0].labels, (std::map<std::string, std::string>{{"k", "v"}}));
  EXPECT_EQ(published[1].ns, "fallback");
  EXPECT_EQ(published[1].name, "app:2");
  EXPECT_EQ(published[2].topic, "/images/update");
  EXPECT_EQ(published[2].labels, (std::map<std::string, std::string>{{"k", "w"}}));
  EXPECT_EQ(published[3].topic, "/images/delete");
  EXPECT_EQ(published[3].name, "app:1");
  EXPECT_EQ(published[3].ns, "ns1");
}

TEST_F(ImagesServiceTest, RefusedRequestsPublishNothing) {
  const std::string digest = Sha256Of("x").ToString();
  ASSERT_TRUE(Create("ns1", Proto("app:1", digest)).ok());
  EXPECT_EQ(Create("ns1", Proto("app:1", digest)).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Create("ns1", Proto("app:2", "sha256:nothex")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create("ns1", Proto("app:3", "")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create("Bad NS", Proto("app:4", digest)).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext context;
  v1::DeleteImageRequest request;
  request.set_name("missing");
  google::protobuf::Empty response;
  EXPECT_EQ(stub_->Delete(&context, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(publisher_.published().size(), 1u);
  EXPECT_EQ(*store_->Count(), 1);
}

TEST_F(ImagesServiceTest, RecordsGaugeFollowsCreateAndDelete) {
  EXPECT_TRUE(absl::StrContains(Metrics(), "berth_images_records 0")) << Metrics();
  ASSERT_TRUE(Create("ns1", Proto("a", Sha256Of("a").ToString())).ok());
  ASSERT_TRUE(Create("ns2", Proto("a", Sha256Of("a").ToString())).ok());
  EXPECT_TRUE(absl::StrContains(Metrics(), "berth_images_records 2")) << Metrics();
}

// The Puller writes records through a PublishingImageStore (main.cc), so a pulled image is
// announced like one made through the Images API.
TEST(PublishingImageStoreTest, EachStoredChangeIsPublishedOnceAndRefusedOnesNot) {
  testing::TempDir dir;
  std::unique_ptr<SqliteImageStore> local = *SqliteImageStore::Open(dir.Join("images.db"));
  RecordingPublisher publisher;
  PublishingImageStore store(*local, publisher);
  const Context ctx{"pulls", ""};
  images::Image image;
  image.name = "127.0.0.1:5000/test/hello:latest";
  image.labels = {{"k", "v"}};
  image.target.media_type = "application/vnd.oci.image.manifest.v1+json";
  image.target.digest = Sha256Of("manifest");
  image.target.size = 8;

  ASSERT_TRUE(store.Create(ctx, image).ok());
  EXPECT_EQ(store.Create(ctx, image).status().code(), absl::StatusCode::kAlreadyExists);
  image.target.digest = Sha256Of("manifest 2");
  ASSERT_TRUE(store.Update(ctx, image, {"target"}).ok());
  EXPECT_EQ(store.Update(ctx, image, {"name"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store.Get(ctx, image.name).ok());
  ASSERT_TRUE(store.List(ctx, {}).ok());
  ASSERT_TRUE(store.Delete(ctx, image.name, false).ok());
  EXPECT_EQ(store.Delete(ctx, image.name, false).code(), absl::StatusCode::kNotFound);

  std::vector<Published> published = publisher.published();
  ASSERT_EQ(published.size(), 3u);
  EXPECT_EQ(published[0].topic, "/images/create");
  EXPECT_EQ(published[1].topic, "/images/update");
  EXPECT_EQ(published[2].topic, "/images/delete");
  for (const Published& p : published) {
    EXPECT_EQ(p.ns, "pulls");
    EXPECT_EQ(p.name, image.name);
  }
  EXPECT_EQ(published[0].labels, image.labels);
}

}  // namespace
}  // namespace berth::imaged
