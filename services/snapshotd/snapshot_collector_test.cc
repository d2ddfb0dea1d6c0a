// SnapshotCollector over a real LocalSnapshotter (native: no mounts needed), with contentd's
// side played by an in-memory lease table and MemoryContentStore: which snapshots a collection
// keeps (gc.root, live leases, lease resources, gc.ref.snapshot labels on content and on
// snapshots, parents, unleased active snapshots) and which it removes (children first); and a
// collection SIGKILLed in a forked child at each step leaves a store where every snapshot is
// either wholly there or wholly gone once it is reopened. A proxy consumer (a request without a
// namespace header: containerd using snapshotd as its proxy snapshotter) cannot remove what
// berth holds, and what it made or adopted survives berth's collections.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/posix.h"
#include "lib/content/memory_content_store.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/snapshot_collector.h"
#include "services/snapshotd/snapshotter_factory.h"

namespace berth::snapshotd {
namespace {

// contentd's leases, in memory: what the collector asks (List, ListResources).
class TableLeases : public leases::LeaseManager {
 public:
  absl::StatusOr<leases::Lease> Create(const Context& ctx, const std::string& id,
                                       const std::map<std::string, std::string>& labels) override {
    absl::MutexLock lock(&mu_);
    leases_[id];
    return leases::Lease{id, absl::Now(), labels};
  }
  absl::Status Delete(const Context& ctx, const std::string& id, bool sync) override {
    absl::MutexLock lock(&mu_);
    return leases_.erase(id) != 0 ? absl::OkStatus() : absl::NotFoundError(id);
  }
  absl::StatusOr<std::vector<leases::Lease>> List(const Context& ctx,
                                                  const std::vector<std::string>&) override {
    absl::MutexLock lock(&mu_);
    std::vector<leases::Lease> out;
    for (const auto& [id, resources] : leases_) {
      out.push_back(leases::Lease{id, absl::Now(), {}});
    }
    return out;
  }
  absl::Status AddResource(const Context& ctx, const std::string& lease,
                           const leases::Resource& resource) override {
    absl::MutexLock lock(&mu_);
    leases_[lease].push_back(resource);
    return absl::OkStatus();
  }
  absl::Status DeleteResource(const Context&, const std::string&,
                              const leases::Resource&) override {
    return absl::UnimplementedError("not needed");
  }
  absl::StatusOr<std::vector<leases::Resource>> ListResources(const Context& ctx,
                                                              const std::string& lease) override {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(lease);
    if (it == leases_.end()) {
      return absl::NotFoundError(lease);
    }
    return it->second;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<leases::Resource>> leases_ ABSL_GUARDED_BY(mu_);
};

class SnapshotCollectorTest : public ::testing::Test {
 public:
  void SetUp() override {
    ctx_.ns = "gc";
    OpenStore();
  }

  void CloseStore() {
    collector_.reset();
    snapshotter_.reset();
  }

  void OpenStore(std::function<void(absl::string_view)> hook = nullptr) {
    CloseStore();
    SnapshotterOptions options;
    options.root = dir_.Join("root");
    options.kind = "native";
    options.gc_hook = std::move(hook);
    absl::StatusOr<std::unique_ptr<LocalSnapshotter>> sn = OpenLocalSnapshotter(options);
    ASSERT_TRUE(sn.ok()) << sn.status();
    snapshotter_ = std::move(*sn);
    collector_ = std::make_unique<SnapshotCollector>(*snapshotter_, leases_, *content_,
                                                     CollectorOptions{});
  }

  // A request without a namespace header, as containerd's proxy client sends.
  Context Proxy() const {
    Context ctx = ctx_;
    ctx.proxy_consumer = true;
    return ctx;
  }

  Context Leased(const std::string& lease) const {
    Context ctx = ctx_;
    ctx.lease = lease;
    return ctx;
  }

  // A committed snapshot `name` on `parent` holding one file, made in `ctx`.
  void Committed(const Context& ctx, const std::string& name, const std::string& parent,
                 const snapshots::Labels& labels = {}) {
    std::string key = name + "-active";
    ASSERT_TRUE(snapshotter_->Prepare(ctx, key, parent, {}).ok());
    absl::StatusOr<std::string> upper = snapshotter_->UpperDir(ctx, key);
    ASSERT_TRUE(upper.ok());
    ASSERT_TRUE(WriteFileAtomic(*upper + "/" + name, name, 0644).ok());
    ASSERT_TRUE(snapshotter_->Commit(ctx, name, key, labels).ok());
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

  // Entries of <root>/snapshots: one per record once nothing is half removed.
  size_t Dirs() const {
    size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.Join("root/snapshots"))) {
      (void)entry;
      ++n;
    }
    return n;
  }

  testing::TempDir dir_;
  Context ctx_;
  TableLeases leases_;
  std::unique_ptr<content::ContentStore> content_ = content::NewMemoryContentStore();
  std::unique_ptr<LocalSnapshotter> snapshotter_;
  std::unique_ptr<SnapshotCollector> collector_;
};

TEST_F(SnapshotCollectorTest, KeepsWhatIsHeldAndRemovesTheRestChildrenFirst) {
  ASSERT_TRUE(leases_.Create(ctx_, "live", {}).ok());
  ASSERT_TRUE(leases_.Create(ctx_, "doomed", {}).ok());
  // Held by a live lease (recorded by snapshotd), and the parent of a held snapshot.
  Committed(ctx_, "base", "");
  Committed(Leased("live"), "leased", "base");
  // Named by a content label (an image config), and what that snapshot's label names.
  Committed(ctx_, "layer1", "");
  Committed(ctx_, "layer2", "layer1");
  Committed(ctx_, "side", "", {});
  snapshots::Info layer2;
  layer2.name = "layer2";
  layer2.labels = {{"containerd.io/gc.ref.snapshot.native", "side"}};
  ASSERT_TRUE(snapshotter_->Update(ctx_, layer2, {"labels"}).ok());
  std::string config = "{\"config\":1}";
  ASSERT_TRUE(content::WriteBlob(*content_, ctx_, "config", config, Sha256Of(config),
                                 {{"containerd.io/gc.ref.snapshot.native", "layer2"}})
                  .ok());
  // A label for another snapshotter holds nothing here.
  Committed(ctx_, "other-snapshotter", "");
  std::string other = "{\"other\":1}";
  ASSERT_TRUE(content::WriteBlob(*content_, ctx_, "other", other, Sha256Of(other),
                                 {{"containerd.io/gc.ref.snapshot.overlayfs", "other-snapshotter"}})
                  .ok());
  // A lease resource on contentd's side ("snapshots/native").
  Committed(ctx_, "resource", "");
  ASSERT_TRUE(leases_.AddResource(ctx_, "live", {"resource", "snapshots/native"}).ok());
  // gc.root, committed and active (the latter under a lease that goes).
  Committed(ctx_, "rooted", "", {{"containerd.io/gc.root", "x"}});
  ASSERT_TRUE(snapshotter_->Prepare(Leased("doomed"), "rooted-active", "",
                                    {{"containerd.io/gc.root", "x"}}).ok());
  // A container's rootfs: active, no lease; its parent stays with it.
  Committed(ctx_, "image-top", "");
  ASSERT_TRUE(snapshotter_->Prepare(ctx_, "rootfs", "image-top", {}).ok());
  // Garbage: a committed chain nothing holds; an active snapshot of a lease that is gone.
  Committed(ctx_, "garbage", "");
  Committed(ctx_, "garbage-child", "garbage");
  ASSERT_TRUE(snapshotter_->Prepare(Leased("doomed"), "doomed-active", "", {}).ok());
  ASSERT_TRUE(leases_.Delete(ctx_, "doomed", false).ok());

  absl::StatusOr<std::vector<std::string>> removed = collector_->Collect(ctx_);
  ASSERT_TRUE(removed.ok()) << removed.status();
  std::set<std::string> gone(removed->begin(), removed->end());
  EXPECT_EQ(gone, (std::set<std::string>{"garbage", "garbage-child", "doomed-active",
                                         "other-snapshotter"}));
  auto pos = [&](const std::string& key) {
    return std::find(removed->begin(), removed->end(), key) - removed->begin();
  };
  EXPECT_LT(pos("garbage-child"), pos("garbage"));
  EXPECT_EQ(Keys(), (std::set<std::string>{"base", "leased", "layer1", "layer2", "side",
                                           "resource", "rooted", "rooted-active", "image-top",
                                           "rootfs"}));
  EXPECT_EQ(Dirs(), Keys().size());

  // Nothing more to take; then the lease goes and what it alone held follows.
  removed = collector_->Collect(ctx_);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(removed->empty());
  ASSERT_TRUE(leases_.Delete(ctx_, "live", false).ok());
  removed = collector_->Collect(ctx_);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(std::set<std::string>(removed->begin(), removed->end()),
            (std::set<std::string>{"leased", "base", "resource"}));
  // And the config: its chain and what the chain's label named follow.
  ASSERT_TRUE(content_->Delete(ctx_, Sha256Of(config)).ok());
  removed = collector_->Collect(ctx_);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, (std::vector<std::string>{"layer2", "layer1", "side"}));
  EXPECT_EQ(Keys(), (std::set<std::string>{"rooted", "rooted-active", "image-top", "rootfs"}));
  EXPECT_EQ(Dirs(), 4u);
}

TEST_F(SnapshotCollectorTest, ContentdUnreachableRemovesNothing) {
  class Down : public TableLeases {
   public:
    absl::StatusOr<std::vector<leases::Lease>> List(const Context&,
                                                    const std::vector<std::string>&) override {
      return absl::UnavailableError("contentd is down");
    }
  } down;
  Committed(ctx_, "garbage", "");
  SnapshotCollector collector(*snapshotter_, down, *content_, CollectorOptions{});
  absl::StatusOr<std::vector<std::string>> removed = collector.Collect(ctx_);
  EXPECT_EQ(removed.status().code(), absl::StatusCode::kUnavailable);
  // Nor can a proxy consumer remove anything: whether berth holds it cannot be told.
  absl::Status st = snapshotter_->Remove(Proxy(), "garbage");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "cannot tell whether berth holds")) << st;
  EXPECT_EQ(Keys(), (std::set<std::string>{"garbage"}));
}

TEST_F(SnapshotCollectorTest, ProxyConsumerCannotRemoveWhatBerthHolds) {
  ASSERT_TRUE(leases_.Create(ctx_, "image", {}).ok());
  Committed(ctx_, "base", "");
  Committed(Leased("image"), "top", "base");
  Committed(ctx_, "rooted", "", {{"containerd.io/gc.root", "x"}});
  Committed(ctx_, "free", "");

  absl::Status st = snapshotter_->Remove(Proxy(), "top");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("lease \"image\""));
  st = snapshotter_->Remove(Proxy(), "base");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("\"top\" needs it"));
  st = snapshotter_->Remove(Proxy(), "rooted");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("containerd.io/gc.root"));
  // What berth does not hold goes, and an unknown key is NotFound as before.
  EXPECT_TRUE(snapshotter_->Remove(Proxy(), "free").ok());
  EXPECT_EQ(snapshotter_->Remove(Proxy(), "nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Keys(), (std::set<std::string>{"base", "top", "rooted"}));
  EXPECT_EQ(Dirs(), 3u);
  // A request with a namespace header removes as it always did.
  EXPECT_TRUE(snapshotter_->Remove(ctx_, "top").ok());
  // Once the lease is gone, so is the hold.
  ASSERT_TRUE(leases_.Delete(ctx_, "image", false).ok());
  EXPECT_TRUE(snapshotter_->Remove(Proxy(), "base").ok());
}

TEST_F(SnapshotCollectorTest, WhatAProxyConsumerMadeOrAdoptedSurvivesCollection) {
  ASSERT_TRUE(leases_.Create(ctx_, "image", {}).ok());
  // containerd's own chain, made through the proxy (no lease: its references are its own).
  Committed(Proxy(), "proxy-1", "");
  Committed(Proxy(), "proxy-2", "proxy-1");
  ASSERT_TRUE(snapshotter_->Prepare(Proxy(), "proxy-rootfs", "proxy-2", {}).ok());
  // berth's chain, which containerd adopts (its unpacker's snapshot.ref probe).
  Committed(Leased("image"), "berth-1", "", {{"containerd.io/snapshot.ref", "berth-1"}});
  absl::StatusOr<std::vector<mount::Mount>> adopt =
      snapshotter_->Prepare(Proxy(), "extract-1", "", {{"containerd.io/snapshot.ref", "berth-1"}});
  EXPECT_EQ(adopt.status().code(), absl::StatusCode::kAlreadyExists) << adopt.status();
  Committed(ctx_, "garbage", "");
  ASSERT_TRUE(leases_.Delete(ctx_, "image", false).ok());

  OpenStore();  // the marks are stored
  absl::StatusOr<std::vector<std::string>> removed = collector_->Collect(ctx_);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, std::vector<std::string>{"garbage"});
  EXPECT_EQ(Keys(), (std::set<std::string>{"proxy-1", "proxy-2", "proxy-rootfs", "berth-1"}));
  // The proxy consumer removes them itself (berth no longer holds berth-1; an active snapshot
  // it made under no lease is its container's rootfs, not berth's).
  EXPECT_TRUE(snapshotter_->Remove(Proxy(), "proxy-rootfs").ok());
  EXPECT_TRUE(snapshotter_->Remove(Proxy(), "proxy-2").ok());
  EXPECT_TRUE(snapshotter_->Remove(Proxy(), "proxy-1").ok());
  EXPECT_TRUE(snapshotter_->Remove(Proxy(), "berth-1").ok());
  EXPECT_TRUE(Keys().empty());
  EXPECT_EQ(Dirs(), 0u);
}

// A collection SIGKILLed at `point` in a forked child; returns once the child is dead.
void CollectAndDieAt(SnapshotCollectorTest* test, const std::string& point,
                     const std::function<void(std::function<void(absl::string_view)>)>& open,
                     const std::function<void()>& collect) {
  test->CloseStore();  // the child takes the root's lock
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int seen = 0;
    open([&](absl::string_view at) {
      if (at == point && ++seen == 2) {  // the second time: some directories are gone
        ::raise(SIGKILL);
      }
      if (at == point && point == "records-deleted") {
        ::raise(SIGKILL);
      }
    });
    collect();
    ::_exit(3);  // not killed: the hook never ran
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

TEST_F(SnapshotCollectorTest, SigkillMidCollectionLeavesEachSnapshotWhollyThereOrGone) {
  Committed(ctx_, "keep", "", {{"containerd.io/gc.root", "x"}});
  for (int i = 0; i < 6; ++i) {
    Committed(ctx_, absl::StrCat("garbage", i), "");
  }
  auto open = [&](std::function<void(absl::string_view)> hook) { OpenStore(std::move(hook)); };
  auto collect = [&] { (void)collector_->Collect(ctx_); };

  // Killed before the records' transaction commits: everything is still there.
  CollectAndDieAt(this, "records-deleted", open, collect);
  OpenStore();
  EXPECT_EQ(Keys().size(), 7u);
  EXPECT_EQ(Dirs(), 7u);
  absl::StatusOr<std::string> data = ReadFile(dir_.Join("root/snapshots/1/fs/keep"));
  ASSERT_TRUE(data.ok()) << data.status();

  // Killed after two directories went: the records are gone, and reopening (Cleanup) removes
  // the directories left; the snapshot held stays whole.
  CollectAndDieAt(this, "dir-removed", open, collect);
  size_t left_behind = Dirs();
  EXPECT_GT(left_behind, 1u);  // the kill did land mid-way
  OpenStore();
  EXPECT_EQ(Keys(), (std::set<std::string>{"keep"}));
  EXPECT_EQ(Dirs(), 1u);
  absl::StatusOr<std::vector<mount::Mount>> view = snapshotter_->View(ctx_, "v", "keep", {});
  ASSERT_TRUE(view.ok()) << view.status();
  absl::StatusOr<std::vector<std::string>> removed = collector_->Collect(ctx_);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(removed->empty());
}

}  // namespace
}  // namespace berth::snapshotd
