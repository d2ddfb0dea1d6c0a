// Images keep what they use alive (issue 10, item 6), end to end: two images sharing their base
// layers, made by umoci and pushed by skopeo to a real docker-registry, pulled through the real
// imaged into a real contentd and snapshotd, then deleted one by one (`berth images rm`, sync by
// default; `ctr images rm --sync` on imaged's socket): each delete frees what the image alone
// held (blobs in contentd, its snapshot chain in snapshotd) and nothing another image or name
// holds, and the image left still mounts. Also: leased, gc.root and unleased active snapshots
// against snapshotd's collector (`berth snapshot gc`), `berth content gc`, snapshotd's GC
// metrics, imaged killed between an image record and its lease repairing it at start, an older
// berth's gc.root on a record's target dropped at start (a user's kept),
// snapshotd killed mid-collection coming back consistent, and --gc-interval.

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "lib/base/grpc_client.h"
#include "lib/base/posix.h"
#include "lib/content/grpc_content_store.h"
#include "lib/images/grpc_image_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

constexpr char kRepo[] = "test/gc";

Context Ctx() { return DefaultNamespace(); }

class GcTest : public ImagedStackTest {
 protected:
  GcTest() : GcTest(testing::FreeTcpPort()) {}
  explicit GcTest(int metrics_port)
      : ImagedStackTest({"--metrics-address", absl::StrCat("127.0.0.1:", metrics_port)}),
        metrics_port_(metrics_port) {}

  void SetUp() override {
    layout_ = dir_.Join("layout");
    absl::Status made = MakeImagesAAndB(layout_);
    ASSERT_TRUE(made.ok()) << made;
    ASSERT_TRUE(registry_.Start().ok()) << registry_.ReadLog();
    for (const char* tag : {"a", "b"}) {
      absl::Status pushed = registry_.Push(layout_, tag, kRepo);
      ASSERT_TRUE(pushed.ok()) << pushed;
    }
    absl::Status started = stack_.Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  absl::Status StartImaged() { return stack_.StartImaged(); }

  std::string Reference(const std::string& tag) const {
    return absl::StrCat(registry_.host(), "/", kRepo, ":", tag);
  }

  CommandResult Berth(const std::vector<std::string>& args) { return stack_.Berth(args); }

  void Pull(const std::string& tag) {
    CommandResult pull = Berth({"pull", Reference(tag), "--insecure-registry", registry_.host()});
    ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  }

  ImageParts Parts(const std::string& tag) const { return PartsOf(layout_, tag); }

  std::string Blob(const std::string& digest) const {
    absl::StatusOr<std::string> data = ReadFile(layout_ + "/blobs/sha256/" + digest.substr(7));
    EXPECT_TRUE(data.ok()) << digest;
    return data.ok() ? *data : "{}";
  }

  std::set<std::string> BlobsInContentd() {
    content::GrpcContentStore content(Dial(contentd_.address()));
    std::set<std::string> out;
    EXPECT_TRUE(content
                    .Walk(Ctx(), {},
                          [&](const content::Info& info) {
                            out.insert(info.digest.ToString());
                            return absl::OkStatus();
                          })
                    .ok());
    return out;
  }

  // On a connection of its own: a restarted snapshotd's shared channel may still be backing off.
  std::set<std::string> Snapshots() {
    snapshots::GrpcSnapshotter snapshotter(DialOwnConnection(snapshotd_.address()), "overlayfs");
    std::set<std::string> out;
    absl::Status walked = snapshotter.Walk(Ctx(), {}, [&](const snapshots::Info& info) {
      out.insert(info.name);
      return absl::OkStatus();
    });
    EXPECT_TRUE(walked.ok()) << walked;
    return out;
  }

  // The top of `chain` mounted read-only shows /hello.
  void ExpectMounts(const std::string& top) {
    snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
    absl::StatusOr<std::vector<mount::Mount>> mounts = snapshotter.View(Ctx(), "gc-view", top, {});
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    std::string target = dir_.Join("mnt");
    ::mkdir(target.c_str(), 0755);
    ASSERT_TRUE(mount::SystemMounter().MountAll(*mounts, target).ok());
    struct stat st {};
    EXPECT_EQ(::stat((target + "/hello").c_str(), &st), 0) << "no /hello under " << top;
    EXPECT_TRUE(mount::SystemMounter().Unmount(target).ok());
    EXPECT_TRUE(snapshotter.Remove(Ctx(), "gc-view").ok());
  }

  std::vector<leases::Lease> ImageLeases() {
    leases::GrpcLeaseManager leases(Dial(contentd_.address()));
    absl::StatusOr<std::vector<leases::Lease>> list =
        leases.List(Ctx(), {"labels.\"berth.io/image\""});
    EXPECT_TRUE(list.ok()) << list.status();
    return list.ok() ? *list : std::vector<leases::Lease>{};
  }

  std::string Metrics() {
    long code = 0;
    return HttpGet(metrics_port_, "/metrics", &code);
  }

  const int metrics_port_;
  std::string layout_;
  Registry registry_{dir_.path()};
};

TEST_F(GcTest, DeletingOneOfTwoImagesFreesOnlyWhatItAloneHeld) {
  Pull("a");
  Pull("b");
  ImageParts a = Parts("a");
  ImageParts b = Parts("b");
  ASSERT_EQ(b.layers.size(), a.layers.size() + 1);
  ASSERT_EQ(b.chain[0], a.chain[0]);  // the shared base
  std::set<std::string> all = a.Blobs();
  std::set<std::string> b_blobs = b.Blobs();
  all.insert(b_blobs.begin(), b_blobs.end());
  ASSERT_EQ(BlobsInContentd(), all);
  std::set<std::string> chains(a.chain.begin(), a.chain.end());
  chains.insert(b.chain.begin(), b.chain.end());
  ASSERT_EQ(Snapshots(), chains);
  EXPECT_EQ(ImageLeases().size(), 2u);

  // b goes: its manifest, config, own layer and top snapshot; a's all stay, and a still mounts.
  CommandResult rm = Berth({"images", "rm", Reference("b")});
  ASSERT_EQ(rm.exit_code, 0) << rm.output << imaged_.ReadLog();
  EXPECT_EQ(BlobsInContentd(), a.Blobs()) << contentd_.ReadLog();
  EXPECT_EQ(Snapshots(), std::set<std::string>(a.chain.begin(), a.chain.end()))
      << snapshotd_.ReadLog();
  ExpectMounts(a.chain.back());
  EXPECT_EQ(ImageLeases().size(), 1u);

  // a goes: nothing is left in either daemon.
  rm = Berth({"images", "rm", Reference("a")});
  ASSERT_EQ(rm.exit_code, 0) << rm.output << imaged_.ReadLog();
  EXPECT_TRUE(BlobsInContentd().empty());
  EXPECT_TRUE(Snapshots().empty());
  EXPECT_TRUE(ImageLeases().empty());

  // snapshotd counted both collections and the snapshots they removed (b's top, then a's two).
  std::string text = Metrics();
  EXPECT_GE(MetricValue(text, "berth_snapshotd_gc_collections_total", {"result=\"ok\""}), 2)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_snapshotd_gc_snapshots_removed_total"),
            static_cast<double>(chains.size()))
      << text;
}

TEST_F(GcTest, TaggedCopyKeepsTheImageUntilBothNamesAreRemoved) {
  Pull("a");
  ImageParts a = Parts("a");
  CommandResult tag = Berth({"images", "tag", Reference("a"), "copy:1"});
  ASSERT_EQ(tag.exit_code, 0) << tag.output;

  CommandResult rm = Berth({"images", "rm", Reference("a")});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_EQ(BlobsInContentd(), a.Blobs());
  EXPECT_EQ(Snapshots(), std::set<std::string>(a.chain.begin(), a.chain.end()));
  ExpectMounts(a.chain.back());

  // containerd's own client on imaged's socket, synchronous delete.
  CommandResult ctr = Ctr(address_, "default", {"images", "rm", "--sync", "copy:1"});
  ASSERT_EQ(ctr.exit_code, 0) << ctr.output << imaged_.ReadLog();
  EXPECT_TRUE(BlobsInContentd().empty());
  EXPECT_TRUE(Snapshots().empty());
}

TEST_F(GcTest, LeasedGcRootAndUnleasedActiveSnapshotsSurviveCollection) {
  Context ctx = Ctx();
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  ASSERT_TRUE(leases.Create(ctx, "work", {}).ok());
  ASSERT_TRUE(leases.Create(ctx, "gone", {}).ok());
  Context work = ctx;
  work.lease = "work";
  Context gone = ctx;
  gone.lease = "gone";
  snapshots::GrpcSnapshotter sn(Dial(snapshotd_.address()), "overlayfs");
  ASSERT_TRUE(sn.Prepare(work, "leased-active", "", {}).ok());
  ASSERT_TRUE(sn.Commit(work, "leased", "leased-active", {}).ok());
  ASSERT_TRUE(sn.Prepare(gone, "rooted", "", {{"containerd.io/gc.root", "1"}}).ok());
  ASSERT_TRUE(sn.Prepare(ctx, "rootfs", "leased", {}).ok());
  ASSERT_TRUE(sn.Prepare(gone, "scratch", "", {}).ok());
  ASSERT_TRUE(sn.Prepare(ctx, "tmp", "", {}).ok());
  ASSERT_TRUE(sn.Commit(ctx, "unheld", "tmp", {}).ok());
  ASSERT_TRUE(leases.Delete(ctx, "gone", false).ok());

  CommandResult gc = Berth({"snapshot", "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.output << snapshotd_.ReadLog();
  std::vector<std::string> removed = absl::StrSplit(gc.output, '\n', absl::SkipEmpty());
  EXPECT_EQ(std::set<std::string>(removed.begin(), removed.end()),
            (std::set<std::string>{"scratch", "unheld"}))
      << gc.output;
  EXPECT_EQ(Snapshots(), (std::set<std::string>{"leased", "rooted", "rootfs"}));

  // The container's rootfs holds its parent after the lease goes; once it goes, so does that.
  ASSERT_TRUE(leases.Delete(ctx, "work", false).ok());
  gc = Berth({"snapshot", "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.output;
  EXPECT_EQ(gc.output, "");
  ASSERT_TRUE(sn.Remove(ctx, "rootfs").ok());
  gc = Berth({"snapshot", "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.output;
  EXPECT_EQ(gc.output, "leased\n");
  EXPECT_EQ(Snapshots(), (std::set<std::string>{"rooted"}));
}

TEST_F(GcTest, ContentGcRemovesBlobsNothingHolds) {
  content::GrpcContentStore content(Dial(contentd_.address()));
  std::string loose = "loose";
  std::string rooted = "rooted";
  ASSERT_TRUE(content::WriteBlob(content, Ctx(), "loose", loose, Sha256Of(loose), {}).ok());
  ASSERT_TRUE(content::WriteBlob(content, Ctx(), "rooted", rooted, Sha256Of(rooted),
                                 {{"containerd.io/gc.root", "1"}})
                  .ok());
  CommandResult gc = Berth({"content", "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.output;
  EXPECT_EQ(gc.output, Sha256Of(loose).ToString() + "\n");
  EXPECT_EQ(BlobsInContentd(), (std::set<std::string>{Sha256Of(rooted).ToString()}));
}

// imaged SIGKILLed between a record and its lease, both ways: a record deleted whose lease
// stayed (its content is freed at start), and a record whose lease is missing (held again at
// start, before anything could collect its content).
TEST_F(GcTest, ImagedKilledBetweenRecordAndLeaseRepairsAtStart) {
  Pull("a");
  Pull("b");
  ImageParts a = Parts("a");
  ImageParts b = Parts("b");
  imaged_.Kill();

  // b's record gone behind imaged's back, its lease left: what a crash after the record's
  // delete and before the lease's leaves.
  int code = 0;
  std::string out = testing::RunCommand(
      {"sqlite3", dir_.Join("imaged-root/images.db"),
       absl::StrCat("DELETE FROM images WHERE name = '", Reference("b"), "'")},
      &code);
  ASSERT_EQ(code, 0) << out;
  // a's lease gone while a stand-in lease keeps its content: a crash after the record's write
  // and before its lease's.
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  ASSERT_TRUE(leases.Create(Ctx(), "stand-in", {}).ok());
  ASSERT_TRUE(leases.AddResource(Ctx(), "stand-in", {a.manifest, "content"}).ok());
  std::vector<leases::Lease> held = ImageLeases();
  ASSERT_EQ(held.size(), 2u);
  for (const leases::Lease& lease : held) {
    if (lease.labels.at("berth.io/image") == Reference("a")) {
      ASSERT_TRUE(leases.Delete(Ctx(), lease.id, false).ok());
    }
  }

  absl::Status started = StartImaged();
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_TRUE(leases.Delete(Ctx(), "stand-in", true).ok());
  held = ImageLeases();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].labels["berth.io/image"], Reference("a"));
  EXPECT_EQ(BlobsInContentd(), a.Blobs());
  // snapshotd's collection runs in the background after the repair.
  std::set<std::string> a_chain(a.chain.begin(), a.chain.end());
  EXPECT_TRUE(testing::WaitFor([&] { return Snapshots() == a_chain; }, absl::Seconds(30)))
      << imaged_.ReadLog();
  ExpectMounts(a.chain.back());
  EXPECT_NE(b.manifest, a.manifest);
}

// Images an older berth pulled: it took no lease per record, and labelled each record's root
// document containerd.io/gc.root=<time> with its gc.ref labels, so a deleted image's blobs
// stayed forever. At start imaged holds such a record with its lease and drops that label:
// deleting the image then frees what it alone held. A gc.root a user set stays, even one in
// berth's format set later than berth's labels.
TEST_F(GcTest, OlderBerthsGcRootIsDroppedAtStartAndAUsersKept) {
  Pull("a");
  Pull("b");
  ImageParts a = Parts("a");
  ImageParts b = Parts("b");
  imaged_.Kill();
  const std::string gc_root = "containerd.io/gc.root";
  auto rfc3339 = [](absl::Time t) {
    return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
  };
  content::GrpcContentStore content(Dial(contentd_.address()));
  // a as an older berth left it: gc.root written with the manifest's gc.ref labels.
  content::Info older;
  older.digest = *Digest::Parse(a.manifest);
  older.labels = {{gc_root, rfc3339(absl::Now())},
                  {"containerd.io/gc.ref.content.config", a.config}};
  ASSERT_TRUE(
      content.Update(Ctx(), older, {"labels." + gc_root, "labels.containerd.io/gc.ref.content.config"})
          .ok());
  // b's manifest rooted by a user, with a time an hour old.
  content::Info users;
  users.digest = *Digest::Parse(b.manifest);
  users.labels = {{gc_root, rfc3339(absl::Now() - absl::Hours(1))}};
  ASSERT_TRUE(content.Update(Ctx(), users, {"labels." + gc_root}).ok());
  // No leases, as before records held their targets.
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  for (const leases::Lease& lease : ImageLeases()) {
    ASSERT_TRUE(leases.Delete(Ctx(), lease.id, false).ok());
  }

  absl::Status started = StartImaged();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_EQ(ImageLeases().size(), 2u);
  absl::StatusOr<content::Info> a_root = content.GetInfo(Ctx(), older.digest);
  ASSERT_TRUE(a_root.ok()) << a_root.status();
  EXPECT_EQ(a_root->labels.count(gc_root), 0u) << imaged_.ReadLog();
  EXPECT_EQ(a_root->labels.count("containerd.io/gc.ref.content.config"), 1u);
  absl::StatusOr<content::Info> b_root = content.GetInfo(Ctx(), users.digest);
  ASSERT_TRUE(b_root.ok()) << b_root.status();
  EXPECT_EQ(b_root->labels[gc_root], users.labels[gc_root]);

  // a goes with its manifest and config (its layers are b's too).
  CommandResult rm = Berth({"images", "rm", Reference("a")});
  ASSERT_EQ(rm.exit_code, 0) << rm.output << imaged_.ReadLog();
  EXPECT_EQ(BlobsInContentd(), b.Blobs());
  // b's record goes; the user's root keeps all of b.
  rm = Berth({"images", "rm", Reference("b")});
  ASSERT_EQ(rm.exit_code, 0) << rm.output << imaged_.ReadLog();
  EXPECT_EQ(BlobsInContentd(), b.Blobs());
}

// snapshotd SIGKILLed while a collection removes directories (its records already gone), then
// started again: every snapshot is wholly there (record and directory, mountable) or wholly
// gone, and nothing is left under snapshots/ that no record owns.
TEST_F(GcTest, SnapshotdKilledMidCollectionComesBackConsistent) {
  Context ctx = Ctx();
  snapshots::GrpcSnapshotter sn(Dial(snapshotd_.address()), "overlayfs");
  ASSERT_TRUE(sn.Prepare(ctx, "keep-active", "", {}).ok());
  ASSERT_TRUE(sn.Commit(ctx, "keep", "keep-active", {{"containerd.io/gc.root", "1"}}).ok());
  // Garbage with enough files that removing it takes a while.
  constexpr int kGarbage = 16;
  for (int i = 0; i < kGarbage; ++i) {
    std::string key = absl::StrCat("g", i);
    absl::StatusOr<std::vector<mount::Mount>> mounts = sn.Prepare(Ctx(), key + "-active", "", {});
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    std::string upper = (*mounts)[0].source;  // a base layer: one bind mount of its directory
    for (int f = 0; f < 100; ++f) {
      std::ofstream(absl::StrCat(upper, "/f", f)) << "x";
    }
    absl::Status committed = sn.Commit(Ctx(), key, key + "-active", {});
    ASSERT_TRUE(committed.ok()) << committed;
  }
  // Collect in a child process (berth snapshot gc) and kill snapshotd once a directory is
  // being removed.
  std::vector<std::string> argv = {testing::BinaryPath("tools/berth/berth"), "--snapshotd-address",
                                   snapshotd_.address(), "snapshot", "gc"};
  testing::Process gc(argv, dir_.path());
  std::string snapshots_dir = snapshotd_.root() + "/snapshots";
  auto removing = [&] {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(snapshots_dir, ec)) {
      if (absl::StartsWith(entry.path().filename().string(), "removed-")) {
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(testing::WaitFor(removing, absl::Seconds(60))) << snapshotd_.ReadLog();
  snapshotd_.Kill();
  gc.Wait();
  size_t left = 0;
  for (const auto& entry : std::filesystem::directory_iterator(snapshots_dir)) {
    (void)entry;
    ++left;
  }
  EXPECT_GT(left, 1u) << "the kill came after the collection finished";

  ASSERT_TRUE(snapshotd_.Start().ok()) << snapshotd_.ReadLog();
  std::set<std::string> keys = Snapshots();
  EXPECT_EQ(keys, (std::set<std::string>{"keep"}));
  size_t dirs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(snapshots_dir)) {
    EXPECT_FALSE(absl::StartsWith(entry.path().filename().string(), "removed-"));
    ++dirs;
  }
  EXPECT_EQ(dirs, keys.size());
  snapshots::GrpcSnapshotter again(DialOwnConnection(snapshotd_.address()), "overlayfs");
  absl::StatusOr<std::vector<mount::Mount>> view = again.View(Ctx(), "keep-view", "keep", {});
  EXPECT_TRUE(view.ok()) << view.status();
}

// --gc-interval: a background collection removes garbage with nobody asking.
TEST_F(GcTest, BackgroundCollectionRunsEveryInterval) {
  Snapshotd::Options options;
  options.contentd_address = contentd_.address();
  options.extra_args = {"--gc-interval", "1"};
  Snapshotd periodic(dir_.Join("periodic"), options);
  ASSERT_EQ(::mkdir(dir_.Join("periodic").c_str(), 0755), 0);
  ASSERT_TRUE(periodic.Start().ok()) << periodic.ReadLog();
  snapshots::GrpcSnapshotter sn(Dial(periodic.address()), "overlayfs");
  ASSERT_TRUE(sn.Prepare(Ctx(), "a", "", {}).ok());
  ASSERT_TRUE(sn.Commit(Ctx(), "garbage", "a", {}).ok());
  ASSERT_TRUE(sn.Prepare(Ctx(), "rootfs", "", {}).ok());
  EXPECT_TRUE(testing::WaitFor([&] { return sn.Stat(Ctx(), "garbage").status().code() ==
                                            absl::StatusCode::kNotFound; },
                               absl::Seconds(30)))
      << periodic.ReadLog();
  EXPECT_TRUE(sn.Stat(Ctx(), "rootfs").ok());
}

}  // namespace
}  // namespace berth::integration
