// contentd's gRPC layer on the wire, beyond what the ContentStore suite covers: containerd's
// Write protocol message by message, Read's chunking and ranges, input validation, the default
// namespace, metrics, and the Leases and Namespaces services (through GrpcLeaseManager and the
// raw stub). The servers run in-process on a unix socket over a real LocalContentStore.

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "containerd/events/namespace.pb.h"
#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"
#include "lib/base/grpc_client.h"
#include "lib/base/identifiers.h"
#include "lib/content/content_service.h"
#include "lib/content/grpc_content_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/testing/testing.h"
#include "services/contentd/leases_service.h"
#include "services/contentd/local_content_store.h"
#include "services/contentd/namespaces_service.h"

namespace berth::contentd {
namespace {

using content::ContentService;
using content::ContentServiceOptions;
using content::ContentStats;

// A Context in `ns` under `lease` (no deadline, no cancellation).
Context Ctx(std::string ns, std::string lease) {
  Context ctx;
  ctx.ns = std::move(ns);
  ctx.lease = std::move(lease);
  return ctx;
}

namespace cv1 = ::containerd::services::content::v1;
namespace nv1 = ::containerd::services::namespaces::v1;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records what was published.
class FakePublisher : public events::Publisher {
 public:
  struct Event {
    std::string ns;
    std::string topic;
    std::string type;
  };
  absl::Status Publish(absl::string_view ns, absl::string_view topic,
                       const google::protobuf::Message& event) override {
    absl::MutexLock lock(&mu_);
    events_.push_back({std::string(ns), std::string(topic), event.GetTypeName()});
    return absl::OkStatus();
  }
  std::vector<Event> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

class ContentdServicesTest : public ::testing::Test {
 protected:
  ContentdServicesTest() {
    StoreOptions options;
    options.root = dir_.Join("root");
    options.lease_expiry_interval = absl::ZeroDuration();
    absl::StatusOr<std::unique_ptr<LocalContentStore>> store = LocalContentStore::Open(options);
    if (!store.ok()) {
      std::cerr << "LocalContentStore::Open: " << store.status() << "\n";
      std::abort();
    }
    store_ = *std::move(store);
    content_ = std::make_unique<ContentService>(
        *store_, ContentServiceOptions{"fallback", registry_, [this] {
                                         StoreStats s = store_->Stats();
                                         return ContentStats{s.blobs, s.bytes};
                                       }});
    leases_ = std::make_unique<LeasesService>(*store_, "fallback");
    namespaces_ = std::make_unique<NamespacesService>(*store_, &publisher_, "fallback");
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("cd.sock"), grpc::InsecureServerCredentials());
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.RegisterService(content_.get());
    builder.RegisterService(leases_.get());
    builder.RegisterService(namespaces_.get());
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) {
      std::cerr << "the services did not start\n";
      std::abort();
    }
    channel_ = Dial(dir_.Join("cd.sock"));
    content_stub_ = cv1::Content::NewStub(channel_);
  }
  ~ContentdServicesTest() override { server_->Shutdown(); }

  // A ClientContext in namespace `ns` (none: no header).
  static std::unique_ptr<grpc::ClientContext> In(const std::string& ns) {
    auto client_context = std::make_unique<grpc::ClientContext>();
    ApplyContext(Ctx(ns, ""), client_context.get());
    return client_context;
  }

  double MetricValue(const std::string& name) {
    for (const prometheus::MetricFamily& family : registry_->Collect()) {
      if (family.name == name && !family.metric.empty()) {
        const prometheus::ClientMetric& metric = family.metric[0];
        return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                              : metric.gauge.value;
      }
    }
    ADD_FAILURE() << "no metric " << name;
    return -1;
  }

  testing::TempDir dir_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  FakePublisher publisher_;
  std::unique_ptr<LocalContentStore> store_;
  std::unique_ptr<ContentService> content_;
  std::unique_ptr<LeasesService> leases_;
  std::unique_ptr<NamespacesService> namespaces_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cv1::Content::Stub> content_stub_;
};

cv1::WriteContentRequest Request(cv1::WriteAction action, int64_t offset, const std::string& data) {
  cv1::WriteContentRequest request;
  request.set_action(action);
  request.set_offset(offset);
  request.set_data(data);
  return request;
}

TEST_F(ContentdServicesTest, WriteFollowsContainerdProtocol) {
  auto client_context = In("proto");
  auto stream = content_stub_->Write(client_context.get());
  cv1::WriteContentRequest stat;
  stat.set_action(cv1::STAT);
  stat.set_ref("proto-ref");
  stat.set_total(11);
  cv1::WriteContentResponse response;
  ASSERT_TRUE(stream->Write(stat));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.action(), cv1::STAT);
  EXPECT_EQ(response.offset(), 0);
  EXPECT_EQ(response.total(), 11);
  EXPECT_EQ(response.digest(), Sha256Of("").ToString());
  EXPECT_GT(response.started_at().seconds(), 0);

  ASSERT_TRUE(stream->Write(Request(cv1::WRITE, 0, "hello")));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.action(), cv1::WRITE);
  EXPECT_EQ(response.offset(), 5);
  EXPECT_EQ(response.digest(), Sha256Of("hello").ToString());

  // Offset 0 on an ingest with data restarts it.
  ASSERT_TRUE(stream->Write(Request(cv1::WRITE, 0, "HELLO")));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.offset(), 5);
  EXPECT_EQ(response.digest(), Sha256Of("HELLO").ToString());

  // COMMIT carries the last data, the expected digest and the labels.
  cv1::WriteContentRequest commit = Request(cv1::COMMIT, 5, " world");
  commit.set_expected(Sha256Of("HELLO world").ToString());
  (*commit.mutable_labels())["k"] = "v";
  ASSERT_TRUE(stream->Write(commit));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.action(), cv1::COMMIT);
  EXPECT_EQ(response.offset(), 11);
  EXPECT_EQ(response.digest(), Sha256Of("HELLO world").ToString());
  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&response));
  ASSERT_TRUE(stream->Finish().ok());

  absl::StatusOr<content::Info> info =
      store_->GetInfo(Ctx("proto", ""), Sha256Of("HELLO world"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->labels, (content::Labels{{"k", "v"}}));
  EXPECT_EQ(MetricValue("berth_content_ingested_bytes_total"), 16);
  EXPECT_EQ(MetricValue("berth_content_stored_blobs"), 1);
  EXPECT_EQ(MetricValue("berth_content_stored_bytes"), 11);

  grpc::ClientContext delete_context;
  ApplyContext(Ctx("proto", ""), &delete_context);
  cv1::DeleteContentRequest del;
  del.set_digest(Sha256Of("HELLO world").ToString());
  google::protobuf::Empty empty;
  ASSERT_TRUE(content_stub_->Delete(&delete_context, del, &empty).ok());
  EXPECT_EQ(MetricValue("berth_content_stored_blobs"), 0);
  EXPECT_EQ(MetricValue("berth_content_stored_bytes"), 0);
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// containerd's proxy writer closes a Write call by half-closing its stream without waiting for
// the server, then often reopens the same ref at once: the server may not have released the
// ref yet. contentd must wait for it as containerd's store does, not refuse it as locked. The
// reopened writer reports the ingest's last write as updated_at (containerd: "status should be
// consistent with version before close"), not the reopen.
TEST_F(ContentdServicesTest, ReopenRightAfterHalfCloseWaitsForTheRef) {
  constexpr int kIterations = 200;
  // File times come from the kernel's coarse clock, a tick behind absl::Now().
  const absl::Duration kFileClockSlack = absl::Milliseconds(20);
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<cv1::WriteContentRequest, cv1::WriteContentResponse>>
        stream;
  };
  std::vector<Call> half_closed;
  absl::Time last_write_before = absl::InfinitePast();
  absl::Time last_write_after = absl::InfinitePast();
  for (int i = 0; i < kIterations; ++i) {
    Call call;
    call.context = In("reopen");
    call.stream = content_stub_->Write(call.context.get());
    cv1::WriteContentRequest stat;
    stat.set_action(cv1::STAT);
    stat.set_ref("reopen-ref");
    cv1::WriteContentResponse response;
    absl::Time reopened = absl::Now();
    ASSERT_TRUE(call.stream->Write(stat));
    if (!call.stream->Read(&response)) {
      grpc::Status status = call.stream->Finish();
      FAIL() << "iteration " << i << ": reopen refused: " << status.error_code() << " "
             << status.error_message();
    }
    EXPECT_EQ(response.offset(), i) << "iteration " << i;
    if (i > 0) {
      absl::Time updated = FromProto(response.updated_at());
      EXPECT_GE(updated, last_write_before - kFileClockSlack) << "iteration " << i;
      EXPECT_LE(updated, last_write_after) << "iteration " << i;
      EXPECT_LT(updated, reopened) << "iteration " << i << ": reports the reopen";
    }
    last_write_before = absl::Now();
    ASSERT_TRUE(call.stream->Write(Request(cv1::WRITE, i, "x")));
    ASSERT_TRUE(call.stream->Read(&response));
    last_write_after = absl::Now();
    EXPECT_EQ(response.offset(), i + 1);
    call.stream->WritesDone();  // and no Finish: the next call starts at once
    half_closed.push_back(std::move(call));
  }
  for (Call& call : half_closed) {
    EXPECT_TRUE(call.stream->Finish().ok());
  }
  absl::StatusOr<content::IngestStatus> status =
      store_->GetStatus(Ctx("reopen", ""), "reopen-ref");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, kIterations);
}

TEST_F(ContentdServicesTest, WriteRejectsBadInput) {
  {
    auto client_context = In("proto");
    auto stream = content_stub_->Write(client_context.get());
    ASSERT_TRUE(stream->Write(Request(cv1::STAT, 0, "")));  // no ref
    cv1::WriteContentResponse response;
    EXPECT_FALSE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("reference"));
  }
  {
    auto client_context = In("proto");
    auto stream = content_stub_->Write(client_context.get());
    cv1::WriteContentRequest first = Request(cv1::WRITE, 0, "abc");
    first.set_ref("offsets");
    cv1::WriteContentResponse response;
    ASSERT_TRUE(stream->Write(first));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.offset(), 3);
    ASSERT_TRUE(stream->Write(Request(cv1::WRITE, 7, "def")));  // not the current offset
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
  }
  {
    auto client_context = In("proto");
    auto stream = content_stub_->Write(client_context.get());
    cv1::WriteContentRequest first = Request(cv1::STAT, 0, "");
    first.set_ref("bad-digest");
    first.set_expected("sha256:nothex");
    cv1::WriteContentResponse response;
    ASSERT_TRUE(stream->Write(first));
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(ContentdServicesTest, ReadStreamsChunksAndRanges) {
  std::string data((2 << 20) + 5, 'x');
  data[1 << 20] = 'y';
  const Digest digest = Sha256Of(data);
  ASSERT_TRUE(content::WriteBlob(*store_, Ctx("fallback", ""), "r", data, digest, {}).ok());

  auto read = [&](int64_t offset, int64_t size, std::vector<int64_t>* offsets) {
    auto client_context = In("");  // no header: the default namespace
    cv1::ReadContentRequest request;
    request.set_digest(digest.ToString());
    request.set_offset(offset);
    request.set_size(size);
    auto stream = content_stub_->Read(client_context.get(), request);
    cv1::ReadContentResponse response;
    std::string out;
    while (stream->Read(&response)) {
      offsets->push_back(response.offset());
      out += response.data();
    }
    grpc::Status status = stream->Finish();
    return status.ok() ? out : absl::StrCat("error ", status.error_code());
  };
  std::vector<int64_t> offsets;
  EXPECT_TRUE(read(0, 0, &offsets) == data);  // size 0: to the end, in 1 MiB messages
  EXPECT_THAT(offsets, ElementsAre(0, 1 << 20, 2 << 20));
  offsets.clear();
  EXPECT_EQ(read(1 << 20, 3, &offsets), "yxx");
  EXPECT_THAT(offsets, ElementsAre(1 << 20));
  offsets.clear();
  EXPECT_EQ(read(static_cast<int64_t>(data.size()) - 2, 100, &offsets), "xx");
  EXPECT_EQ(read(static_cast<int64_t>(data.size()), 0, &offsets), "");
  EXPECT_EQ(read(static_cast<int64_t>(data.size()) + 1, 0, &offsets),
            absl::StrCat("error ", grpc::StatusCode::OUT_OF_RANGE));
}

TEST_F(ContentdServicesTest, MalformedDigestIsInvalidArgument) {
  google::protobuf::Empty empty;
  for (const std::string& bad : {std::string(""), std::string("sha256:abc"),
                                 std::string("md5:d41d8cd98f00b204e9800998ecf8427e")}) {
    auto info_context = In("ns");
    cv1::InfoRequest info;
    info.set_digest(bad);
    cv1::InfoResponse info_response;
    EXPECT_EQ(content_stub_->Info(info_context.get(), info, &info_response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << bad;
    auto delete_context = In("ns");
    cv1::DeleteContentRequest del;
    del.set_digest(bad);
    EXPECT_EQ(content_stub_->Delete(delete_context.get(), del, &empty).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << bad;
    auto read_context = In("ns");
    cv1::ReadContentRequest read;
    read.set_digest(bad);
    auto stream = content_stub_->Read(read_context.get(), read);
    cv1::ReadContentResponse read_response;
    EXPECT_FALSE(stream->Read(&read_response));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  auto bad_ns = In("not a namespace!");
  cv1::InfoRequest info;
  info.set_digest(Sha256Of("x").ToString());
  cv1::InfoResponse info_response;
  EXPECT_EQ(content_stub_->Info(bad_ns.get(), info, &info_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ContentdServicesTest, ListSendsManyInfosPerMessage) {
  const Context ctx = Ctx("many", "");
  for (int i = 0; i < 130; ++i) {
    std::string data = absl::StrCat("blob ", i);
    ASSERT_TRUE(
        content::WriteBlob(*store_, ctx, absl::StrCat("ref-", i), data, Sha256Of(data), {}).ok());
  }
  auto client_context = In("many");
  auto stream = content_stub_->List(client_context.get(), cv1::ListContentRequest());
  cv1::ListContentResponse response;
  std::vector<int> sizes;
  std::set<std::string> digests;
  while (stream->Read(&response)) {
    sizes.push_back(response.info_size());
    for (const cv1::Info& info : response.info()) {
      digests.insert(info.digest());
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_THAT(sizes, ElementsAre(100, 30));
  EXPECT_EQ(digests.size(), 130u);
}

TEST_F(ContentdServicesTest, LeasesThroughGrpcLeaseManager) {
  leases::GrpcLeaseManager manager(channel_);
  const Context ctx = Ctx("leased", "");

  absl::StatusOr<leases::Lease> generated = manager.Create(ctx, "", {{"purpose", "test"}});
  ASSERT_TRUE(generated.ok()) << generated.status();
  EXPECT_TRUE(ValidateIdentifier("lease", generated->id).ok()) << generated->id;
  EXPECT_EQ(generated->labels, (std::map<std::string, std::string>{{"purpose", "test"}}));
  EXPECT_GT(generated->created_at, absl::UnixEpoch());

  absl::StatusOr<leases::Lease> named = manager.Create(ctx, "named", {});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->id, "named");
  EXPECT_EQ(manager.Create(ctx, "named", {}).status().code(), absl::StatusCode::kAlreadyExists);

  absl::StatusOr<std::vector<leases::Lease>> all = manager.List(ctx, {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 2u);
  absl::StatusOr<std::vector<leases::Lease>> filtered = manager.List(ctx, {"labels.purpose"});
  ASSERT_TRUE(filtered.ok()) << filtered.status();
  ASSERT_EQ(filtered->size(), 1u);
  EXPECT_EQ((*filtered)[0].id, generated->id);
  // Other namespaces see none of it.
  absl::StatusOr<std::vector<leases::Lease>> elsewhere = manager.List(Ctx("other", ""), {});
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.status();
  EXPECT_TRUE(elsewhere->empty());

  const leases::Resource resource{Sha256Of("held").ToString(), "content"};
  ASSERT_TRUE(manager.AddResource(ctx, "named", resource).ok());
  absl::StatusOr<std::vector<leases::Resource>> resources = manager.ListResources(ctx, "named");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_THAT(*resources, ElementsAre(resource));
  ASSERT_TRUE(manager.DeleteResource(ctx, "named", resource).ok());
  resources = manager.ListResources(ctx, "named");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_TRUE(resources->empty());

  ASSERT_TRUE(manager.Delete(ctx, "named", /*sync=*/true).ok());
  ASSERT_TRUE(manager.Delete(ctx, generated->id, /*sync=*/false).ok());
  EXPECT_EQ(manager.Delete(ctx, "named", false).code(), absl::StatusCode::kNotFound);
}

TEST_F(ContentdServicesTest, ContentWrittenUnderALeaseIsHeld) {
  leases::GrpcLeaseManager manager(channel_);
  content::GrpcContentStore content(channel_);
  absl::StatusOr<leases::Lease> lease = manager.Create(Ctx("leased", ""), "pull-1", {});
  ASSERT_TRUE(lease.ok()) << lease.status();
  const Context ctx = Ctx("leased", "pull-1");
  const Digest digest = Sha256Of("under a lease");
  ASSERT_TRUE(content::WriteBlob(content, ctx, "leased-ref", "under a lease", digest, {}).ok());
  absl::StatusOr<std::vector<leases::Resource>> resources = manager.ListResources(ctx, "pull-1");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_THAT(*resources, ::testing::Contains(leases::Resource{digest.ToString(), "content"}));
}

TEST_F(ContentdServicesTest, NamespacesServiceAndEvents) {
  std::unique_ptr<nv1::Namespaces::Stub> stub = nv1::Namespaces::NewStub(channel_);
  {
    auto client_context = In("");
    nv1::CreateNamespaceRequest request;
    request.mutable_namespace_()->set_name("team-a");
    (*request.mutable_namespace_()->mutable_labels())["owner"] = "a";
    nv1::CreateNamespaceResponse response;
    ASSERT_TRUE(stub->Create(client_context.get(), request, &response).ok());
    EXPECT_EQ(response.namespace_().name(), "team-a");
  }
  {
    auto client_context = In("");
    nv1::CreateNamespaceRequest request;
    request.mutable_namespace_()->set_name("team-a");
    nv1::CreateNamespaceResponse response;
    EXPECT_EQ(stub->Create(client_context.get(), request, &response).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }
  {
    auto client_context = In("");
    nv1::UpdateNamespaceRequest request;
    request.mutable_namespace_()->set_name("team-a");
    (*request.mutable_namespace_()->mutable_labels())["tier"] = "gold";
    request.mutable_update_mask()->add_paths("labels.tier");
    nv1::UpdateNamespaceResponse response;
    ASSERT_TRUE(stub->Update(client_context.get(), request, &response).ok());
  }
  {
    auto client_context = In("");
    nv1::GetNamespaceRequest request;
    request.set_name("team-a");
    nv1::GetNamespaceResponse response;
    ASSERT_TRUE(stub->Get(client_context.get(), request, &response).ok());
    EXPECT_EQ(response.namespace_().labels().size(), 2);
    EXPECT_EQ(response.namespace_().labels().at("tier"), "gold");
  }
  {
    auto client_context = In("");
    nv1::ListNamespacesResponse response;
    ASSERT_TRUE(stub->List(client_context.get(), nv1::ListNamespacesRequest(), &response).ok());
    std::set<std::string> names;
    for (const nv1::Namespace& ns : response.namespaces()) {
      names.insert(ns.name());
    }
    EXPECT_EQ(names.count("team-a"), 1u);
  }
  {
    auto client_context = In("");
    nv1::DeleteNamespaceRequest request;
    request.set_name("team-a");
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub->Delete(client_context.get(), request, &empty).ok());
  }
  {
    auto client_context = In("");
    nv1::GetNamespaceRequest request;
    request.set_name("team-a");
    nv1::GetNamespaceResponse response;
    EXPECT_EQ(stub->Get(client_context.get(), request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  std::vector<std::string> topics;
  for (const FakePublisher::Event& event : publisher_.events()) {
    EXPECT_EQ(event.ns, "fallback");
    topics.push_back(event.topic + " " + event.type);
  }
  EXPECT_THAT(topics, ElementsAre("/namespaces/create containerd.events.NamespaceCreate",
                                  "/namespaces/update containerd.events.NamespaceUpdate",
                                  "/namespaces/delete containerd.events.NamespaceDelete"));
}

}  // namespace
}  // namespace berth::contentd
