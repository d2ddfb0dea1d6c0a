// ParallelUnpacker (and UnpackService through GrpcUnpacker): a chain unpacked in parallel gives
// the same merged view as the serial Prepare/Apply/Commit chain (whiteouts and opaque
// directories included), an existing prefix of the chain is reused, and a failing layer leaves
// no snapshot behind. Needs root (overlay mounts).

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/archive/compression.h"
#include "lib/base/grpc_client.h"
#include "lib/content/content_store.h"
#include "lib/content/memory_content_store.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/grpc_unpacker.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/archive/testutil.h"
#include "services/snapshotd/diff_applier.h"
#include "services/snapshotd/parallel_unpacker.h"
#include "services/snapshotd/snapshotter_factory.h"
#include "services/snapshotd/unpack_service.h"

namespace berth::snapshotd {
namespace {

using testutil::DescribeTree;
using testutil::TarBuilder;

constexpr char kOciGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";

std::string Gzip(const std::string& data) {
  StringSink out;
  auto sink = ::berth::archive::NewCompressingSink(out, ::berth::archive::Compression::kGzip);
  EXPECT_TRUE(sink.ok());
  EXPECT_TRUE((*sink)->Write(data).ok());
  EXPECT_TRUE((*sink)->Close().ok());
  return out.data();
}

// Layer 1: a base. Layer 2: deletes etc/remove-me (whiteout), adds and changes files.
// Layer 3: makes opt/dir opaque (a, b gone) with a new c.
std::vector<std::string> ThreeLayers() {
  std::vector<std::string> tars;
  {
    TarBuilder tar;
    tar.Dir("etc");
    tar.File("etc/passwd", "root:x:0:0\n");
    tar.File("etc/remove-me", "bye");
    tar.Dir("opt");
    tar.Dir("opt/dir");
    tar.File("opt/dir/a", "a");
    tar.File("opt/dir/b", "b");
    tar.File("keep", "v1");
    tar.Symlink("link", "etc/passwd");
    tars.push_back(tar.Build());
  }
  {
    TarBuilder tar;
    tar.Dir("etc");
    tar.File("etc/.wh.remove-me", "");
    tar.File("etc/new", "new");
    tar.File("keep", "v2", 0600);
    tars.push_back(tar.Build());
  }
  {
    TarBuilder tar;
    tar.Dir("opt");
    tar.Dir("opt/dir", 0700);
    tar.File("opt/dir/.wh..wh..opq", "");
    tar.File("opt/dir/c", "c");
    tars.push_back(tar.Build());
  }
  return tars;
}

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override { Open("overlayfs"); }

  void Open(const std::string& kind) {
    unpacker_.reset();
    applier_.reset();
    snapshotter_.reset();
    store_ = content::NewMemoryContentStore();
    SnapshotterOptions options;
    options.root = dir_.Join(kind + "-snapshots");
    options.kind = kind;
    auto s = OpenLocalSnapshotter(options);
    ASSERT_TRUE(s.ok()) << s.status();
    snapshotter_ = std::move(*s);
    LayerApplierOptions applier_options;
    applier_options.whiteouts = kind == "native" ? LayerApplierOptions::Whiteouts::kNative
                                                 : LayerApplierOptions::Whiteouts::kOverlay;
    applier_ = std::make_unique<LayerApplier>(*store_, applier_options);
    unpacker_ = std::make_unique<ParallelUnpacker>(*snapshotter_, *applier_);
    ctx_.ns = "default";
  }

  oci::Descriptor Put(const std::string& blob, const std::string& media_type = kOciGzip) {
    oci::Descriptor desc;
    desc.media_type = media_type;
    desc.digest = Sha256Of(blob);
    desc.size = static_cast<int64_t>(blob.size());
    EXPECT_TRUE(content::WriteBlob(*store_, ctx_, absl::StrCat("put-", desc.digest.hex()), blob,
                                   desc.digest, {})
                    .ok());
    return desc;
  }

  std::vector<oci::Descriptor> PutAll(const std::vector<std::string>& tars) {
    std::vector<oci::Descriptor> out;
    for (const std::string& tar : tars) {
      out.push_back(Put(Gzip(tar)));
    }
    return out;
  }

  // The old way: Prepare on the parent, Apply, Commit, layer by layer.
  void SerialChain(const std::vector<oci::Descriptor>& layers,
                   const std::vector<std::string>& chain) {
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string key = absl::StrCat("serial-key-", i);
      auto mounts = snapshotter_->Prepare(ctx_, key, i == 0 ? "" : chain[i - 1], {});
      ASSERT_TRUE(mounts.ok()) << mounts.status();
      auto applied = applier_->Apply(ctx_, layers[i], *mounts);
      ASSERT_TRUE(applied.ok()) << applied.status();
      ASSERT_TRUE(snapshotter_->Commit(ctx_, chain[i], key, {}).ok());
    }
  }

  // The merged tree of committed `name`, through a view mounted in a temp dir.
  std::map<std::string, std::string> MergedTree(const std::string& name) {
    std::string key = absl::StrCat("view-of-", name);
    auto mounts = snapshotter_->View(ctx_, key, name, {});
    EXPECT_TRUE(mounts.ok()) << mounts.status();
    if (!mounts.ok()) {
      return {};
    }
    std::string target = dir_.Join(key);
    EXPECT_EQ(mkdir(target.c_str(), 0755), 0);
    absl::Status st = mount::SystemMounter().MountAll(*mounts, target);
    EXPECT_TRUE(st.ok()) << st;
    std::map<std::string, std::string> tree = DescribeTree(target, /*with_dir_mtimes=*/false);
    tree.erase(".");
    EXPECT_TRUE(mount::SystemMounter().Unmount(target).ok());
    EXPECT_TRUE(snapshotter_->Remove(ctx_, key).ok());
    return tree;
  }

  std::set<std::string> Keys() {
    std::set<std::string> keys;
    EXPECT_TRUE(snapshotter_
                    ->Walk(ctx_, {},
                           [&](const snapshots::Info& info) {
                             keys.insert(info.name);
                             return absl::OkStatus();
                           })
                    .ok());
    return keys;
  }

  // No directory of snapshots/ is temporary or unowned.
  void ExpectNoLeftovers() {
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(snapshotter_->root() + "/snapshots", ec)) {
      std::string name = e.path().filename().string();
      EXPECT_FALSE(absl::StartsWith(name, "tmp-") || absl::StartsWith(name, "removed-"))
          << name << " left behind";
    }
  }

  void TearDown() override {
    if (snapshotter_ != nullptr) {
      ExpectNoLeftovers();
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<content::ContentStore> store_;
  std::unique_ptr<LocalSnapshotter> snapshotter_;
  std::unique_ptr<LayerApplier> applier_;
  std::unique_ptr<ParallelUnpacker> unpacker_;
  Context ctx_;
};

TEST_F(UnpackTest, ParallelChainMatchesSerialChain) {
  std::vector<std::string> tars = ThreeLayers();
  std::vector<oci::Descriptor> layers = PutAll(tars);
  auto applied = unpacker_->Unpack(ctx_, layers, {"p1", "p2", "p3"}, {{"team", "a"}});
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_EQ(applied->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*applied)[i].digest, Sha256Of(tars[i])) << i;
    EXPECT_EQ((*applied)[i].media_type, "application/vnd.oci.image.layer.v1.tar");
  }
  for (auto [name, parent] : std::vector<std::pair<std::string, std::string>>{
           {"p1", ""}, {"p2", "p1"}, {"p3", "p2"}}) {
    auto info = snapshotter_->Stat(ctx_, name);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->kind, snapshots::Kind::kCommitted);
    EXPECT_EQ(info->parent, parent);
    EXPECT_EQ(info->labels.at("team"), "a");
    EXPECT_EQ(info->labels.at(kUncompressedLabel), (*applied)[name[1] - '1'].digest.ToString());
  }
  EXPECT_EQ(Keys(), (std::set<std::string>{"p1", "p2", "p3"}));

  SerialChain(layers, {"s1", "s2", "s3"});
  std::map<std::string, std::string> parallel = MergedTree("p3");
  std::map<std::string, std::string> serial = MergedTree("s3");
  EXPECT_EQ(parallel, serial);
  EXPECT_EQ(parallel.count("etc/remove-me"), 0u);
  EXPECT_EQ(parallel.count("etc/new"), 1u);
  EXPECT_EQ(parallel.count("opt/dir/a"), 0u);
  EXPECT_EQ(parallel.count("opt/dir/b"), 0u);
  EXPECT_EQ(parallel.count("opt/dir/c"), 1u);
  EXPECT_EQ(parallel.count("link"), 1u);
  // The middle of the chain too.
  EXPECT_EQ(MergedTree("p2"), MergedTree("s2"));
}

// A caller that goes away halfway (its cancellation turns true once the first layer is being
// applied) gets Cancelled, and every snapshot the unpack had made is gone: none of the
// temporary ones, none of the committed ones. The same with a deadline that has passed.
TEST_F(UnpackTest, CallerThatLeavesGetsNothingLeftBehind) {
  for (const char* kind : {"overlayfs", "native"}) {
    Open(kind);
    std::vector<oci::Descriptor> layers = PutAll(ThreeLayers());
    std::atomic<int> polls{0};
    Context ctx = ctx_;
    // Alive() is asked before each layer, each chunk of a blob and each commit: let a few pass.
    ctx.cancellation = std::make_shared<Cancellation>([&] { return ++polls > 4; });
    absl::Mutex progress_mu;  // reported from several threads
    std::vector<snapshots::UnpackProgress> progress;
    auto applied = unpacker_->Unpack(ctx, layers, {"c1", "c2", "c3"}, {},
                                     [&](const snapshots::UnpackProgress& p) {
                                       absl::MutexLock lock(&progress_mu);
                                       progress.push_back(p);
                                     });
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kCancelled) << kind << applied.status();
    EXPECT_GT(polls.load(), 4) << kind;
    EXPECT_THAT(Keys(), ::testing::IsEmpty()) << kind;
    ExpectNoLeftovers();

    Context late = ctx_;
    late.deadline = absl::Now() - absl::Seconds(1);
    applied = unpacker_->Unpack(late, layers, {"c1", "c2", "c3"}, {});
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kDeadlineExceeded) << kind;
    EXPECT_THAT(Keys(), ::testing::IsEmpty()) << kind;

    // With a caller that stays, the same unpack completes and reports each layer once.
    progress.clear();
    applied = unpacker_->Unpack(ctx_, layers, {"c1", "c2", "c3"}, {},
                                [&](const snapshots::UnpackProgress& p) {
                                  absl::MutexLock lock(&progress_mu);
                                  progress.push_back(p);
                                });
    ASSERT_TRUE(applied.ok()) << kind << applied.status();
    ASSERT_EQ(progress.size(), 6u) << kind;  // each layer started, then applied
    std::set<size_t> reported;
    progress.erase(std::remove_if(progress.begin(), progress.end(),
                                  [](const snapshots::UnpackProgress& p) {
                                    return p.state == snapshots::UnpackProgress::State::kStarted;
                                  }),
                   progress.end());
    ASSERT_EQ(progress.size(), 3u) << kind;
    for (const snapshots::UnpackProgress& p : progress) {
      EXPECT_EQ(p.state, snapshots::UnpackProgress::State::kApplied);
      EXPECT_EQ(p.applied.digest, (*applied)[p.layer].digest);
      reported.insert(p.layer);
    }
    EXPECT_EQ(reported, (std::set<size_t>{0, 1, 2})) << kind;
    // A temporary snapshot that survived a crash is found and removed; committed ones stay.
    ASSERT_TRUE(snapshotter_->Prepare(ctx_, "unpack-crashed", "", {{kUnpackTemporaryLabel, "true"}})
                    .ok());
    ASSERT_TRUE(snapshotter_->Prepare(ctx_, "user-key", "", {}).ok());
    absl::StatusOr<int> removed = unpacker_->RemoveLeftovers();
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_EQ(*removed, 1);
    EXPECT_EQ(Keys(), (std::set<std::string>{"c1", "c2", "c3", "user-key"})) << kind;
  }
}

TEST_F(UnpackTest, ReusesAnExistingPrefix) {
  std::vector<std::string> tars = ThreeLayers();
  std::vector<oci::Descriptor> layers = PutAll(tars);
  ASSERT_TRUE(unpacker_->Unpack(ctx_, {layers[0], layers[1]}, {"p1", "p2"}, {}).ok());
  auto p1 = snapshotter_->Stat(ctx_, "p1");
  ASSERT_TRUE(p1.ok());
  // Reused layers are not read again: their blobs may as well be missing.
  std::vector<oci::Descriptor> missing = layers;
  missing[0].digest = Sha256Of("not in the store 0");
  missing[1].digest = Sha256Of("not in the store 1");
  auto applied = unpacker_->Unpack(ctx_, missing, {"p1", "p2", "p3"}, {});
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ((*applied)[0].digest, Sha256Of(tars[0]));  // from the snapshot's label
  EXPECT_EQ((*applied)[1].digest, Sha256Of(tars[1]));
  EXPECT_EQ((*applied)[2].digest, Sha256Of(tars[2]));
  auto p1_again = snapshotter_->Stat(ctx_, "p1");
  ASSERT_TRUE(p1_again.ok());
  EXPECT_EQ(p1_again->created_at, p1->created_at);
  EXPECT_EQ(snapshotter_->Stat(ctx_, "p3")->parent, "p2");
  EXPECT_EQ(Keys(), (std::set<std::string>{"p1", "p2", "p3"}));

  // All of it exists: nothing to do, nothing read.
  auto again = unpacker_->Unpack(ctx_, missing, {"p1", "p2", "p3"}, {});
  ASSERT_TRUE(again.ok()) << again.status();

  // A name that exists on another parent is refused, and nothing is made.
  auto wrong = unpacker_->Unpack(ctx_, {layers[1], layers[0]}, {"other", "p1"}, {});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition) << wrong.status();
  EXPECT_EQ(Keys(), (std::set<std::string>{"p1", "p2", "p3"}));
}

TEST_F(UnpackTest, AFailingLayerLeavesNothingBehind) {
  std::vector<oci::Descriptor> layers = PutAll(ThreeLayers());
  // Not a tar.
  std::vector<oci::Descriptor> bad = layers;
  bad[1] = Put(Gzip(std::string(5000, 'x')));
  auto applied = unpacker_->Unpack(ctx_, bad, {"q1", "q2", "q3"}, {});
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kInvalidArgument) << applied.status();
  EXPECT_TRUE(Keys().empty());
  // Not in the store.
  bad = layers;
  bad[2].digest = Sha256Of("nowhere");
  applied = unpacker_->Unpack(ctx_, bad, {"q1", "q2", "q3"}, {});
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kNotFound) << applied.status();
  EXPECT_TRUE(Keys().empty());
  // The wrong uncompressed digest.
  bad = layers;
  bad[0].annotations[kUncompressedLabel] = Sha256Of("something else").ToString();
  applied = unpacker_->Unpack(ctx_, bad, {"q1", "q2", "q3"}, {});
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kFailedPrecondition) << applied.status();
  EXPECT_TRUE(Keys().empty());
  // On top of an existing prefix: the prefix stays, the rest goes.
  ASSERT_TRUE(unpacker_->Unpack(ctx_, {layers[0]}, {"q1"}, {}).ok());
  bad = layers;
  bad[2] = Put(Gzip(std::string(5000, 'y')));
  applied = unpacker_->Unpack(ctx_, bad, {"q1", "q2", "q3"}, {});
  EXPECT_FALSE(applied.ok());
  EXPECT_EQ(Keys(), (std::set<std::string>{"q1"}));
  // Bad input.
  EXPECT_EQ(unpacker_->Unpack(ctx_, layers, {"a", "b"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unpacker_->Unpack(ctx_, {}, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unpacker_->Unpack(ctx_, layers, {"a", "b", "a"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Keys(), (std::set<std::string>{"q1"}));
}

TEST_F(UnpackTest, DetachedSnapshots) {
  auto mounts = snapshotter_->PrepareDetached(ctx_, "d", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 1u);
  EXPECT_EQ((*mounts)[0].type, "bind");
  EXPECT_EQ(snapshotter_->CommitWithParent(ctx_, "n", "d", "absent", {}).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(snapshotter_->Prepare(ctx_, "active", "", {}).ok());
  EXPECT_EQ(snapshotter_->CommitWithParent(ctx_, "n", "d", "active", {}).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(snapshotter_->Commit(ctx_, "base", "active", {}).ok());
  ASSERT_TRUE(snapshotter_->CommitWithParent(ctx_, "n", "d", "base", {}).ok());
  EXPECT_EQ(snapshotter_->Stat(ctx_, "n")->parent, "base");
  EXPECT_EQ(snapshotter_->Remove(ctx_, "base").code(), absl::StatusCode::kFailedPrecondition);
  // Only a parentless active snapshot can be given a parent.
  ASSERT_TRUE(snapshotter_->Prepare(ctx_, "child", "base", {}).ok());
  EXPECT_EQ(snapshotter_->CommitWithParent(ctx_, "m", "child", "n", {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The batches the unpacker uses: PrepareDetachedAll makes every key or none; CommitChain
// commits a chain bottom-up, each step on the one below it, all or nothing.
TEST_F(UnpackTest, PrepareDetachedAllAndCommitChainAreAllOrNothing) {
  ASSERT_TRUE(snapshotter_->Prepare(ctx_, "taken", "", {}).ok());
  EXPECT_EQ(snapshotter_->PrepareDetachedAll(ctx_, {"k1", "taken", "k3"}, {}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Keys(), (std::set<std::string>{"taken"}));
  absl::StatusOr<std::vector<std::vector<mount::Mount>>> mounts =
      snapshotter_->PrepareDetachedAll(ctx_, {"k1", "k2", "k3"}, {{"l", "v"}});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 3u);
  EXPECT_NE((*mounts)[0][0].source, (*mounts)[1][0].source);
  EXPECT_EQ(snapshotter_->Stat(ctx_, "k2")->labels.at("l"), "v");

  // The top step's name is taken: nothing of the chain commits.
  ASSERT_TRUE(snapshotter_->Commit(ctx_, "c3", "taken", {}).ok());
  EXPECT_EQ(snapshotter_->CommitChain(ctx_, {{"c1", "k1", "", {}},
                                             {"c2", "k2", "c1", {}},
                                             {"c3", "k3", "c2", {}}})
                .code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(snapshotter_->Stat(ctx_, "k1")->kind, snapshots::Kind::kActive);
  EXPECT_EQ(snapshotter_->Stat(ctx_, "c1").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(snapshotter_->CommitChain(ctx_, {{"c1", "k1", "", {{"a", "1"}}},
                                               {"c2", "k2", "c1", {{"a", "2"}}},
                                               {"c4", "k3", "c2", {}}})
                  .ok());
  EXPECT_EQ(snapshotter_->Stat(ctx_, "c1")->parent, "");
  EXPECT_EQ(snapshotter_->Stat(ctx_, "c2")->parent, "c1");
  EXPECT_EQ(snapshotter_->Stat(ctx_, "c2")->labels.at("a"), "2");
  EXPECT_EQ(snapshotter_->Stat(ctx_, "c4")->parent, "c2");
  EXPECT_EQ(snapshotter_->Stat(ctx_, "c4")->kind, snapshots::Kind::kCommitted);
  EXPECT_EQ(Keys(), (std::set<std::string>{"c1", "c2", "c3", "c4"}));
}

TEST_F(UnpackTest, NativeAppliesInOrder) {
  Open("native");
  EXPECT_EQ(snapshotter_->PrepareDetached(ctx_, "d", {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<oci::Descriptor> layers = PutAll(ThreeLayers());
  auto applied = unpacker_->Unpack(ctx_, layers, {"n1", "n2", "n3"}, {});
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(snapshotter_->Stat(ctx_, "n3")->parent, "n2");
  std::map<std::string, std::string> tree = MergedTree("n3");
  EXPECT_EQ(tree.count("etc/remove-me"), 0u);
  EXPECT_EQ(tree.count("opt/dir/a"), 0u);
  EXPECT_EQ(tree.count("opt/dir/c"), 1u);
  std::vector<oci::Descriptor> bad = layers;
  bad[2] = Put(Gzip(std::string(5000, 'z')));
  EXPECT_FALSE(unpacker_->Unpack(ctx_, bad, {"m1", "m2", "m3"}, {}).ok());
  EXPECT_EQ(Keys(), (std::set<std::string>{"n1", "n2", "n3"}));
}

TEST_F(UnpackTest, OverGrpc) {
  UnpackService service(*unpacker_, "default");
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + dir_.Join("u.sock"), grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  snapshots::GrpcUnpacker client(Dial(dir_.Join("u.sock")));

  std::vector<std::string> tars = ThreeLayers();
  Context other{"other", ""};
  std::vector<oci::Descriptor> layers;
  for (const std::string& tar : tars) {
    std::string blob = Gzip(tar);
    oci::Descriptor desc{kOciGzip, Sha256Of(blob), static_cast<int64_t>(blob.size()), {}};
    ASSERT_TRUE(content::WriteBlob(*store_, other, absl::StrCat("put-", desc.digest.hex()), blob,
                                   desc.digest, {})
                    .ok());
    layers.push_back(desc);
  }
  auto applied = client.Unpack(other, layers, {"g1", "g2", "g3"}, {});
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_EQ(applied->size(), 3u);
  EXPECT_EQ((*applied)[2].digest, Sha256Of(tars[2]));
  EXPECT_EQ(snapshotter_->Stat(other, "g3")->parent, "g2");
  EXPECT_TRUE(Keys().empty());  // in "other", not the default namespace

  auto bad = client.Unpack(other, layers, {"only-one"}, {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  server->Shutdown();
}


// What a session reported, shared with the unpacking threads.
class ProgressLog {
 public:
  snapshots::UnpackProgressFn Fn() {
    return [this](const snapshots::UnpackProgress& p) {
      absl::MutexLock lock(&mu_);
      log_.push_back(p);
    };
  }
  // Waits (up to 60 s) until layer `layer` reported `state`; false if it never did.
  bool WaitFor(size_t layer, snapshots::UnpackProgress::State state) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::any_of(log_.begin(), log_.end(), [&](const snapshots::UnpackProgress& p) {
        return p.layer == layer && p.state == state;
      });
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(60));
  }
  bool Saw(size_t layer, snapshots::UnpackProgress::State state) {
    absl::MutexLock lock(&mu_);
    return std::any_of(log_.begin(), log_.end(), [&](const snapshots::UnpackProgress& p) {
      return p.layer == layer && p.state == state;
    });
  }

 private:
  absl::Mutex mu_;
  std::vector<snapshots::UnpackProgress> log_ ABSL_GUARDED_BY(mu_);
};

// A session, in process and over UnpackStream: layers announced out of order (0, then 2, then
// 1) are each applied as soon as announced, layer 0 committed while 1 and 2 are still to come,
// layer 2 applied but not committed before 1 is in; the result is the serial chain's tree.
// Dropping a session halfway removes what it made; a bad layer fails it and leaves nothing.
class UnpackSessionTest : public UnpackTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    UnpackTest::SetUp();
    if (GetParam()) {
      service_ = std::make_unique<UnpackService>(*unpacker_, "default");
      grpc::ServerBuilder builder;
      builder.AddListeningPort("unix:" + dir_.Join("s.sock"), grpc::InsecureServerCredentials());
      builder.RegisterService(service_.get());
      server_ = builder.BuildAndStart();
      ASSERT_NE(server_, nullptr);
      client_ = std::make_unique<snapshots::GrpcUnpacker>(Dial(dir_.Join("s.sock")));
    }
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
    UnpackTest::TearDown();
  }
  snapshots::Unpacker& Under() {
    return client_ != nullptr ? static_cast<snapshots::Unpacker&>(*client_) : *unpacker_;
  }

  std::unique_ptr<UnpackService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<snapshots::GrpcUnpacker> client_;
};

using State = snapshots::UnpackProgress::State;

TEST_P(UnpackSessionTest, AppliesEachLayerAsItIsAnnouncedAndCommitsBottomUp) {
  std::vector<std::string> tars = ThreeLayers();
  std::vector<oci::Descriptor> layers = PutAll(tars);
  ProgressLog log;
  auto session = Under().Start(ctx_, layers, {"t1", "t2", "t3"}, {}, log.Fn());
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->reused(), 0u);

  ASSERT_TRUE((*session)->Ready(0).ok());
  ASSERT_TRUE(log.WaitFor(0, State::kApplied)) << "layer 0 not committed before 1 and 2 came";
  EXPECT_EQ(snapshotter_->Stat(ctx_, "t1")->kind, snapshots::Kind::kCommitted);
  EXPECT_FALSE(log.Saw(1, State::kStarted));

  ASSERT_TRUE((*session)->Ready(2).ok());
  ASSERT_TRUE(log.WaitFor(2, State::kStarted)) << "layer 2 not started before layer 1 came";
  // Not committed: the layer below it is not there yet.
  EXPECT_TRUE(absl::IsNotFound(snapshotter_->Stat(ctx_, "t3").status()));

  ASSERT_TRUE((*session)->Ready(1).ok());
  auto applied = (*session)->Finish();
  ASSERT_TRUE(applied.ok()) << applied.status();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*applied)[i].digest, Sha256Of(tars[i])) << i;
  }
  EXPECT_EQ(snapshotter_->Stat(ctx_, "t3")->parent, "t2");
  EXPECT_EQ(snapshotter_->Stat(ctx_, "t2")->parent, "t1");
  session->reset();
  EXPECT_EQ(Keys(), (std::set<std::string>{"t1", "t2", "t3"}));

  SerialChain(layers, {"s1", "s2", "s3"});
  EXPECT_EQ(MergedTree("t3"), MergedTree("s3"));
  EXPECT_EQ(MergedTree("t2"), MergedTree("s2"));

  // Again on top of the whole chain: everything reused, nothing applied.
  ProgressLog again_log;
  auto again = Under().Start(ctx_, layers, {"t1", "t2", "t3"}, {}, again_log.Fn());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->reused(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE((*again)->Ready(i).ok());
  }
  ASSERT_TRUE((*again)->Finish().ok());
  EXPECT_FALSE(again_log.Saw(0, State::kStarted));
}

TEST_P(UnpackSessionTest, DroppedOrFailedSessionLeavesNothing) {
  std::vector<oci::Descriptor> layers = PutAll(ThreeLayers());
  {
    ProgressLog log;
    auto session = Under().Start(ctx_, layers, {"d1", "d2", "d3"}, {}, log.Fn());
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->Ready(0).ok());
    ASSERT_TRUE((*session)->Ready(2).ok());
    ASSERT_TRUE(log.WaitFor(0, State::kApplied));
    ASSERT_TRUE(log.WaitFor(2, State::kStarted));
  }  // dropped: layer 1 never came
  EXPECT_THAT(Keys(), ::testing::IsEmpty());

  // Finished before every layer came: refused, and nothing stays.
  auto early = Under().Start(ctx_, layers, {"d1", "d2", "d3"}, {});
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_TRUE((*early)->Ready(0).ok());
  EXPECT_EQ((*early)->Finish().status().code(), absl::StatusCode::kInvalidArgument);
  early->reset();
  EXPECT_THAT(Keys(), ::testing::IsEmpty());

  // A bad middle layer: the session fails, the committed bottom goes too.
  std::vector<oci::Descriptor> bad = layers;
  bad[1] = Put(Gzip(std::string(5000, 'x')));
  ProgressLog log;
  auto failing = Under().Start(ctx_, bad, {"f1", "f2", "f3"}, {}, log.Fn());
  ASSERT_TRUE(failing.ok()) << failing.status();
  ASSERT_TRUE((*failing)->Ready(0).ok());
  ASSERT_TRUE(log.WaitFor(0, State::kApplied));
  (void)(*failing)->Ready(1);  // may report the failure already
  (void)(*failing)->Ready(2);
  EXPECT_EQ((*failing)->Finish().status().code(), absl::StatusCode::kInvalidArgument);
  failing->reset();
  EXPECT_THAT(Keys(), ::testing::IsEmpty());

  // Bad input is refused at Start.
  EXPECT_EQ(Under().Start(ctx_, layers, {"a", "b"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(InProcessAndGrpc, UnpackSessionTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("Grpc") : std::string("InProcess");
                         });

}  // namespace
}  // namespace berth::snapshotd
