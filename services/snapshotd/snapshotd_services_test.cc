// The Snapshots and Diff servers, through their gRPC clients (GrpcSnapshotter, GrpcDiff) on a
// unix socket, over in-memory fakes of the contracts: every field crosses the wire both ways,
// errors keep their code and message, requests without a namespace header land in the default
// namespace, and List streams in blocks. (The contract itself is tested by
// snapshotter_testsuite.h against the real snapshotters, and through this same wire in
// snapshots_conformance_test.cc.)

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "lib/base/grpc_client.h"
#include "lib/diff/grpc_diff.h"
#include "lib/filters/filter.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/snapshots/proto_convert.h"
#include "lib/snapshots/snapshots_service.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/diff_service.h"

namespace berth::snapshotd {
namespace {

using snapshots::SnapshotsService;
using snapshots::SnapshotsServiceOptions;

using snapshots::Info;
using snapshots::Kind;

// Just enough of the contract to exercise the wire: records only, mounts naming the key.
class FakeSnapshotter : public snapshots::Snapshotter {
 public:
  absl::StatusOr<Info> Stat(const Context& ctx, const std::string& key) override {
    absl::MutexLock lock(&mu_);
    last_ctx_ = ctx;
    auto it = infos_.find({ctx.ns, key});
    if (it == infos_.end()) {
      return absl::NotFoundError(absl::StrCat("snapshot ", key, ": not found"));
    }
    return it->second;
  }
  absl::StatusOr<Info> Update(const Context& ctx, const Info& info,
                              const std::vector<std::string>& fieldpaths) override {
    absl::MutexLock lock(&mu_);
    auto it = infos_.find({ctx.ns, info.name});
    if (it == infos_.end()) {
      return absl::NotFoundError(absl::StrCat("snapshot ", info.name, ": not found"));
    }
    last_paths_ = fieldpaths;
    if (fieldpaths.empty()) {
      it->second.labels = info.labels;
    }
    for (const std::string& path : fieldpaths) {
      if (path == "labels") {
        it->second.labels = info.labels;
      } else if (path.rfind("labels.", 0) == 0) {
        std::string key = path.substr(7);
        auto label = info.labels.find(key);
        if (label == info.labels.end()) {
          it->second.labels.erase(key);
        } else {
          it->second.labels[key] = label->second;
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat("cannot update ", path));
      }
    }
    it->second.updated_at = absl::Now();
    return it->second;
  }
  absl::StatusOr<snapshots::Usage> GetUsage(const Context& ctx, const std::string& key) override {
    if (!Stat(ctx, key).ok()) {
      return absl::NotFoundError(absl::StrCat("snapshot ", key, ": not found"));
    }
    return snapshots::Usage{static_cast<int64_t>(key.size()) * 1000 + 7, 42};
  }
  absl::StatusOr<std::vector<mount::Mount>> Mounts(const Context& ctx,
                                                   const std::string& key) override {
    absl::StatusOr<Info> info = Stat(ctx, key);
    if (!info.ok()) {
      return info.status();
    }
    if (info->kind == Kind::kCommitted) {
      return absl::FailedPreconditionError(absl::StrCat("snapshot ", key, ": committed"));
    }
    return MountsFor(key, info->kind == Kind::kView);
  }
  absl::StatusOr<std::vector<mount::Mount>> Prepare(const Context& ctx, const std::string& key,
                                                    const std::string& parent,
                                                    const snapshots::Labels& labels) override {
    return Create(ctx, key, parent, labels, Kind::kActive);
  }
  absl::StatusOr<std::vector<mount::Mount>> View(const Context& ctx, const std::string& key,
                                                 const std::string& parent,
                                                 const snapshots::Labels& labels) override {
    return Create(ctx, key, parent, labels, Kind::kView);
  }
  absl::Status Commit(const Context& ctx, const std::string& name, const std::string& key,
                      const snapshots::Labels& labels) override {
    absl::MutexLock lock(&mu_);
    auto it = infos_.find({ctx.ns, key});
    if (it == infos_.end()) {
      return absl::NotFoundError(absl::StrCat("snapshot ", key, ": not found"));
    }
    if (it->second.kind != Kind::kActive) {
      return absl::FailedPreconditionError(absl::StrCat("snapshot ", key, ": not active"));
    }
    if (infos_.count({ctx.ns, name}) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("snapshot ", name, ": already exists"));
    }
    Info info = it->second;
    infos_.erase(it);
    info.name = name;
    info.kind = Kind::kCommitted;
    info.labels = labels;
    infos_[{ctx.ns, name}] = info;
    return absl::OkStatus();
  }
  absl::Status Remove(const Context& ctx, const std::string& key) override {
    absl::MutexLock lock(&mu_);
    if (infos_.erase({ctx.ns, key}) == 0) {
      return absl::NotFoundError(absl::StrCat("snapshot ", key, ": not found"));
    }
    return absl::OkStatus();
  }
  absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                    const std::function<absl::Status(const Info&)>& fn) override {
    absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
    if (!filter.ok()) {
      return filter.status();
    }
    std::vector<Info> matched;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, info] : infos_) {
        if (id.first != ctx.ns) {
          continue;
        }
        const Info* p = &info;
        auto fields = [p](absl::string_view field) -> std::optional<std::string> {
          if (field == "name" && !p->name.empty()) {
            return p->name;
          }
          if (field == "parent" && !p->parent.empty()) {
            return p->parent;
          }
          return std::nullopt;
        };
        if (filter->Match(filters::MakeAdaptor(fields, &info.labels))) {
          matched.push_back(info);
        }
      }
    }
    for (const Info& info : matched) {
      if (absl::Status st = fn(info); !st.ok()) {
        return st;
      }
    }
    return absl::OkStatus();
  }
  absl::Status Cleanup(const Context& ctx) override {
    absl::MutexLock lock(&mu_);
    last_ctx_ = ctx;
    ++cleanups_;
    return absl::OkStatus();
  }

  Context last_ctx() {
    absl::MutexLock lock(&mu_);
    return last_ctx_;
  }
  std::vector<std::string> last_paths() {
    absl::MutexLock lock(&mu_);
    return last_paths_;
  }
  int cleanups() {
    absl::MutexLock lock(&mu_);
    return cleanups_;
  }

  static std::vector<mount::Mount> MountsFor(const std::string& key, bool ro) {
    mount::Mount m;
    m.type = "bind";
    m.source = "/fake/" + key;
    m.target = "";
    m.options = {ro ? "ro" : "rw", "rbind"};
    return {m};
  }

 private:
  absl::StatusOr<std::vector<mount::Mount>> Create(const Context& ctx, const std::string& key,
                                                   const std::string& parent,
                                                   const snapshots::Labels& labels, Kind kind) {
    absl::MutexLock lock(&mu_);
    last_ctx_ = ctx;
    if (infos_.count({ctx.ns, key}) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("snapshot ", key, ": already exists"));
    }
    if (!parent.empty()) {
      auto it = infos_.find({ctx.ns, parent});
      if (it == infos_.end()) {
        return absl::NotFoundError(absl::StrCat("parent snapshot ", parent, ": not found"));
      }
      if (it->second.kind != Kind::kCommitted) {
        return absl::FailedPreconditionError(
            absl::StrCat("parent snapshot ", parent, ": not committed"));
      }
    }
    Info info;
    info.kind = kind;
    info.name = key;
    info.parent = parent;
    info.labels = labels;
    info.created_at = absl::FromUnixNanos(1700000000123456789);
    info.updated_at = info.created_at;
    infos_[{ctx.ns, key}] = info;
    return MountsFor(key, kind == Kind::kView);
  }

  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, Info> infos_ ABSL_GUARDED_BY(mu_);
  Context last_ctx_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> last_paths_ ABSL_GUARDED_BY(mu_);
  int cleanups_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeDiff : public diff::Applier, public diff::Comparer {
 public:
  absl::StatusOr<oci::Descriptor> Apply(const Context& ctx, const oci::Descriptor& desc,
                                        const std::vector<mount::Mount>& mounts) override {
    absl::MutexLock lock(&mu_);
    applied_ctx_ = ctx;
    applied_desc_ = desc;
    applied_mounts_ = mounts;
    if (desc.media_type == "not/a-layer") {
      return absl::InvalidArgumentError("layer: not a tar");
    }
    oci::Descriptor out;
    out.media_type = "application/vnd.oci.image.layer.v1.tar";
    out.digest = Sha256Of("uncompressed");
    out.size = 12345;
    return out;
  }
  absl::StatusOr<oci::Descriptor> Compare(const Context& ctx,
                                          const std::vector<mount::Mount>& lower,
                                          const std::vector<mount::Mount>& upper,
                                          const diff::CompareOptions& options) override {
    absl::MutexLock lock(&mu_);
    compared_ctx_ = ctx;
    lower_ = lower;
    upper_ = upper;
    options_ = options;
    oci::Descriptor out;
    out.media_type = options.media_type.empty() ? "application/vnd.oci.image.layer.v1.tar+gzip"
                                                : options.media_type;
    out.digest = Sha256Of("layer");
    out.size = 99;
    out.annotations = {{"containerd.io/uncompressed", Sha256Of("tar").ToString()}};
    return out;
  }

  absl::Mutex mu_;
  Context applied_ctx_;
  oci::Descriptor applied_desc_;
  std::vector<mount::Mount> applied_mounts_;
  Context compared_ctx_;
  std::vector<mount::Mount> lower_;
  std::vector<mount::Mount> upper_;
  diff::CompareOptions options_;
};

class SnapshotdServicesTest : public ::testing::Test {
 protected:
  SnapshotdServicesTest()
      : snapshots_service_(fake_, SnapshotsServiceOptions{"fallback-ns"}),
        diff_service_(diff_, diff_, "fallback-ns") {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.Join("s.sock"), grpc::InsecureServerCredentials());
    builder.RegisterService(&snapshots_service_);
    builder.RegisterService(&diff_service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    channel_ = Dial(dir_.Join("s.sock"));
    client_ = std::make_unique<snapshots::GrpcSnapshotter>(channel_, "whatever-name");
    differ_ = std::make_unique<diff::GrpcDiff>(channel_);
  }
  ~SnapshotdServicesTest() override { server_->Shutdown(); }

  testing::TempDir dir_;
  FakeSnapshotter fake_;
  FakeDiff diff_;
  SnapshotsService snapshots_service_;
  DiffService diff_service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<snapshots::GrpcSnapshotter> client_;
  std::unique_ptr<diff::GrpcDiff> differ_;
  const Context ctx_{"ns1", "lease-1"};
};

TEST_F(SnapshotdServicesTest, LifecycleCrossesTheWire) {
  absl::StatusOr<std::vector<mount::Mount>> mounts =
      client_->Prepare(ctx_, "base", "", {{"a", "1"}, {"b", "2"}});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 1u);
  EXPECT_EQ((*mounts)[0].type, "bind");
  EXPECT_EQ((*mounts)[0].source, "/fake/base");
  EXPECT_EQ((*mounts)[0].options, (std::vector<std::string>{"rw", "rbind"}));
  EXPECT_EQ(fake_.last_ctx().ns, "ns1");
  EXPECT_EQ(fake_.last_ctx().lease, "lease-1");

  absl::StatusOr<Info> info = client_->Stat(ctx_, "base");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kind, Kind::kActive);
  EXPECT_EQ(info->labels, (snapshots::Labels{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(info->created_at, absl::FromUnixNanos(1700000000123456789));

  ASSERT_TRUE(client_->Commit(ctx_, "layer-1", "base", {{"c", "3"}}).ok());
  info = client_->Stat(ctx_, "layer-1");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->labels, (snapshots::Labels{{"c", "3"}}));

  mounts = client_->View(ctx_, "v", "layer-1", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_EQ((*mounts)[0].options[0], "ro");
  info = client_->Stat(ctx_, "v");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kView);
  EXPECT_EQ(info->parent, "layer-1");

  mounts = client_->Mounts(ctx_, "v");
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_EQ((*mounts)[0].source, "/fake/v");

  absl::StatusOr<snapshots::Usage> usage = client_->GetUsage(ctx_, "layer-1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->size, 7007);
  EXPECT_EQ(usage->inodes, 42);

  ASSERT_TRUE(client_->Remove(ctx_, "v").ok());
  EXPECT_EQ(client_->Stat(ctx_, "v").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(client_->Cleanup(ctx_).ok());
  EXPECT_EQ(fake_.cleanups(), 1);

}

TEST_F(SnapshotdServicesTest, ErrorsKeepCodeAndMessage) {
  ASSERT_TRUE(client_->Prepare(ctx_, "k", "", {}).ok());
  absl::StatusOr<std::vector<mount::Mount>> again = client_->Prepare(ctx_, "k", "", {});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(again.status().message(), "snapshot k: already exists");
  EXPECT_EQ(client_->Prepare(ctx_, "k2", "missing", {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Prepare(ctx_, "k3", "k", {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->Commit(ctx_, "n", "missing", {}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Remove(ctx_, "missing").code(), absl::StatusCode::kNotFound);
  // Empty keys never reach the snapshotter.
  EXPECT_EQ(client_->Prepare(ctx_, "", "", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Commit(ctx_, "", "k", {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Stat(ctx_, "").status().code(), absl::StatusCode::kInvalidArgument);
  // A malformed filter.
  absl::Status walked = client_->Walk(ctx_, {"name=="}, [](const Info&) {
    return absl::OkStatus();
  });
  EXPECT_EQ(walked.code(), absl::StatusCode::kInvalidArgument) << walked;
}

TEST_F(SnapshotdServicesTest, NoNamespaceHeaderMeansTheDefaultNamespace) {
  ASSERT_TRUE(client_->Prepare(Context{"", ""}, "k", "", {}).ok());
  EXPECT_EQ(fake_.last_ctx().ns, "fallback-ns");
  EXPECT_TRUE(client_->Stat(Context{"fallback-ns", ""}, "k").ok());
  EXPECT_EQ(client_->Stat(Context{"other", ""}, "k").status().code(),
            absl::StatusCode::kNotFound);
  // A namespace containerd would refuse.
  EXPECT_EQ(client_->Stat(Context{"Bad Namespace!", ""}, "k").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SnapshotdServicesTest, UpdateSendsTheFieldMask) {
  ASSERT_TRUE(client_->Prepare(ctx_, "k", "", {{"a", "1"}, {"b", "2"}}).ok());
  Info update;
  update.name = "k";
  update.labels = {{"a", "10"}, {"c", "3"}};
  absl::StatusOr<Info> updated = client_->Update(ctx_, update, {"labels.a", "labels.b"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(fake_.last_paths(), (std::vector<std::string>{"labels.a", "labels.b"}));
  EXPECT_EQ(updated->labels, (snapshots::Labels{{"a", "10"}}));
  updated = client_->Update(ctx_, update, {});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, update.labels);
  EXPECT_EQ(client_->Update(ctx_, update, {"parent"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SnapshotdServicesTest, ListStreamsEverythingInBlocksAndFilters) {
  for (int i = 0; i < 250; ++i) {
    ASSERT_TRUE(client_
                    ->Prepare(ctx_, absl::StrCat("k", i), "",
                              {{"parity", i % 2 == 0 ? "even" : "odd"}})
                    .ok());
  }
  std::set<std::string> seen;
  ASSERT_TRUE(client_
                  ->Walk(ctx_, {},
                         [&](const Info& info) {
                           seen.insert(info.name);
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(seen.size(), 250u);

  int even = 0;
  ASSERT_TRUE(client_
                  ->Walk(ctx_, {"labels.parity==even"},
                         [&](const Info&) {
                           ++even;
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(even, 125);

  // The raw stream: 100 + 100 + 50.
  grpc::ClientContext client_context;
  ApplyContext(ctx_, &client_context);
  containerd::services::snapshots::v1::ListSnapshotsRequest request;
  auto stub = containerd::services::snapshots::v1::Snapshots::NewStub(channel_);
  auto stream = stub->List(&client_context, request);
  containerd::services::snapshots::v1::ListSnapshotsResponse block;
  std::vector<int> sizes;
  while (stream->Read(&block)) {
    sizes.push_back(block.info_size());
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(sizes, (std::vector<int>{100, 100, 50}));

  // An error from the callback stops the walk and comes back as is.
  int calls = 0;
  absl::Status stopped = client_->Walk(ctx_, {}, [&](const Info&) {
    ++calls;
    return absl::AbortedError("enough");
  });
  EXPECT_EQ(stopped, absl::AbortedError("enough"));
  EXPECT_EQ(calls, 1);
}

TEST_F(SnapshotdServicesTest, AnySnapshotterNameIsServed) {
  snapshots::GrpcSnapshotter overlay(channel_, "overlayfs");
  snapshots::GrpcSnapshotter unnamed(channel_, "");
  ASSERT_TRUE(overlay.Prepare(ctx_, "k", "", {}).ok());
  EXPECT_TRUE(unnamed.Stat(ctx_, "k").ok());
  EXPECT_TRUE(client_->Stat(ctx_, "k").ok());
}

TEST_F(SnapshotdServicesTest, DiffApplyAndCompareCrossTheWire) {
  oci::Descriptor layer;
  layer.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  layer.digest = Sha256Of("compressed");
  layer.size = 77;
  layer.annotations = {{"containerd.io/uncompressed", Sha256Of("uncompressed").ToString()}};
  std::vector<mount::Mount> mounts = {
      {"overlay", "overlay", "", {"lowerdir=/a:/b", "upperdir=/c", "workdir=/d"}}};
  absl::StatusOr<oci::Descriptor> applied = differ_->Apply(ctx_, layer, mounts);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->media_type, "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(applied->digest, Sha256Of("uncompressed"));
  EXPECT_EQ(applied->size, 12345);
  {
    absl::MutexLock lock(&diff_.mu_);
    EXPECT_EQ(diff_.applied_ctx_.ns, "ns1");
    EXPECT_EQ(diff_.applied_ctx_.lease, "lease-1");
    EXPECT_EQ(diff_.applied_desc_.digest, layer.digest);
    EXPECT_EQ(diff_.applied_desc_.size, 77);
    EXPECT_EQ(diff_.applied_desc_.media_type, layer.media_type);
    EXPECT_EQ(diff_.applied_desc_.annotations, layer.annotations);
    ASSERT_EQ(diff_.applied_mounts_.size(), 1u);
    EXPECT_EQ(diff_.applied_mounts_[0].type, "overlay");
    EXPECT_EQ(diff_.applied_mounts_[0].options, mounts[0].options);
  }

  oci::Descriptor bad = layer;
  bad.media_type = "not/a-layer";
  absl::StatusOr<oci::Descriptor> refused = differ_->Apply(ctx_, bad, mounts);
  EXPECT_EQ(refused.status(), absl::InvalidArgumentError("layer: not a tar"));
  // No mounts, or no digest: refused before the applier.
  EXPECT_EQ(differ_->Apply(ctx_, layer, {}).status().code(), absl::StatusCode::kInvalidArgument);

  diff::CompareOptions options;
  options.ref = "my-ref";
  options.labels = {{"x", "y"}};
  absl::StatusOr<oci::Descriptor> written =
      differ_->Compare(ctx_, FakeSnapshotter::MountsFor("lower", true),
                       FakeSnapshotter::MountsFor("upper", true), options);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(written->digest, Sha256Of("layer"));
  EXPECT_EQ(written->annotations.at("containerd.io/uncompressed"), Sha256Of("tar").ToString());
  {
    absl::MutexLock lock(&diff_.mu_);
    EXPECT_EQ(diff_.options_.ref, "my-ref");
    EXPECT_EQ(diff_.options_.labels, options.labels);
    EXPECT_EQ(diff_.lower_[0].source, "/fake/lower");
    EXPECT_EQ(diff_.upper_[0].source, "/fake/upper");
  }
  EXPECT_EQ(differ_->Compare(ctx_, {}, {}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SnapshotdServicesTest, DiffRefusesADescriptorWithoutDigest) {
  grpc::ClientContext client_context;
  containerd::services::diff::v1::ApplyRequest request;
  request.mutable_diff()->set_media_type("application/vnd.oci.image.layer.v1.tar");
  *request.add_mounts() = snapshots::MountToProto(FakeSnapshotter::MountsFor("k", false)[0]);
  containerd::services::diff::v1::ApplyResponse response;
  auto stub = containerd::services::diff::v1::Diff::NewStub(channel_);
  grpc::Status status = stub->Apply(&client_context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
}

}  // namespace
}  // namespace berth::snapshotd
