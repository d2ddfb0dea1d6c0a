// snapshotd killed with SIGKILL in the middle of Apply or Commit comes back with no half-made
// snapshot: an interrupted Apply leaves its (still active) snapshot, never a committed one, and
// removing it leaves nothing on disk; each interrupted Commit is all or nothing (the key is
// still active, or the name is committed, never both or neither); every directory under
// <root>/snapshots belongs to a record; Cleanup removes directories no record owns.

#include <dirent.h>
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "integration/harness.h"
#include "integration/snapshotd_harness.h"
#include "lib/base/grpc_client.h"
#include "lib/content/grpc_content_store.h"
#include "lib/diff/grpc_diff.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/snapshots/grpc_unpacker.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

// Entry names in `dir` (not recursive), "." and ".." excluded.
std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") {
      out.insert(name);
    }
  }
  closedir(d);
  return out;
}

// How many entries the tree under `dir` has (stops counting at `limit`).
int CountTree(const std::string& dir, int limit) {
  int n = 0;
  for (const std::string& name : Entries(dir)) {
    ++n;
    std::string path = dir + "/" + name;
    struct stat st;
    if (n < limit && lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      n += CountTree(path, limit - n);
    }
    if (n >= limit) {
      break;
    }
  }
  return n;
}

// Every snapshot in ctx's namespace.
std::vector<snapshots::Info> All(snapshots::Snapshotter& sn, const Context& ctx) {
  std::vector<snapshots::Info> out;
  absl::Status st = sn.Walk(ctx, {}, [&](const snapshots::Info& info) {
    out.push_back(info);
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

// The writable directory of a fresh snapshot's mounts: a bind mount's source, an overlay's
// upperdir.
std::string UpperOf(const std::vector<mount::Mount>& mounts) {
  for (const mount::Mount& m : mounts) {
    if (m.type == "bind") {
      return m.source;
    }
    for (const std::string& option : m.options) {
      if (absl::StartsWith(option, "upperdir=")) {
        return option.substr(9);
      }
    }
  }
  return "";
}

class SnapshotdCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    contentd_ = std::make_unique<Contentd>(dir_.path(), Contentd::Options{});
    absl::Status st = contentd_->Start();
    ASSERT_TRUE(st.ok()) << st;
    Snapshotd::Options options;
    options.contentd_address = contentd_->address();
    options.log_level = "info";
    snapshotd_ = std::make_unique<Snapshotd>(dir_.path(), options);
    st = snapshotd_->Start();
    ASSERT_TRUE(st.ok()) << st;
    Connect();
  }

  // A fresh channel after each restart (the old one may be in backoff).
  void Connect() {
    auto channel = Dial(snapshotd_->address());
    sn_ = std::make_unique<snapshots::GrpcSnapshotter>(channel, "overlayfs");
    differ_ = std::make_unique<diff::GrpcDiff>(channel);
  }

  void Restart() {
    snapshotd_->Kill();
    absl::Status st = snapshotd_->Start();
    ASSERT_TRUE(st.ok()) << st;
    Connect();
  }

  // Every directory under <root>/snapshots is a snapshot's, and there is one per snapshot.
  void ExpectDiskMatchesRecords() {
    std::set<std::string> entries = Entries(snapshotd_->root() + "/snapshots");
    for (const std::string& name : entries) {
      EXPECT_FALSE(absl::StartsWith(name, "tmp-") || absl::StartsWith(name, "removed-"))
          << name << " left in " << snapshotd_->root() << "/snapshots";
    }
    EXPECT_EQ(entries.size(), All(*sn_, ctx_).size());
  }

  // A gzip tar layer of `files` files of 16 KiB each (compressible, so the blob is small and
  // the extraction long), written to contentd; returns its descriptor.
  oci::Descriptor MakeLayer(int files) {
    std::string src = dir_.Join("layer-src");
    int code = -1;
    // One `split` makes every file (a shell loop of cp would take a minute).
    std::string out = testing::RunCommand(
        absl::StrCat("set -e; mkdir -p ", src, "/files; cd ", src, "/files; head -c ",
                     int64_t{files} * 16384, " /dev/zero | tr '\\0' x | split -b 16384 -a 5 - f",
                     "; cd ..; tar -czf ", dir_.Join("layer.tar.gz"), " files"),
        &code);
    EXPECT_EQ(code, 0) << out;
    absl::StatusOr<std::string> blob = ReadFile(dir_.Join("layer.tar.gz"));
    EXPECT_TRUE(blob.ok());
    content::GrpcContentStore store(Dial(contentd_->address()));
    Digest digest = Sha256Of(*blob);
    absl::Status st = content::WriteBlob(store, ctx_, "crash-layer", *blob, digest, {});
    EXPECT_TRUE(st.ok()) << st;
    oci::Descriptor desc;
    desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    desc.digest = digest;
    desc.size = static_cast<int64_t>(blob->size());
    return desc;
  }

  // Restarts snapshotd with BERTH_SNAPSHOTD_CRASH_POINT=`point` (empty: none).
  void RestartWithCrashPoint(const std::string& point) {
    snapshotd_->Kill();
    Snapshotd::Options options;
    options.contentd_address = contentd_->address();
    options.log_level = "info";
    if (!point.empty()) {
      options.env = {absl::StrCat("BERTH_SNAPSHOTD_CRASH_POINT=", point)};
    }
    snapshotd_ = std::make_unique<Snapshotd>(dir_.path(), options);
    absl::Status st = snapshotd_->Start();
    ASSERT_TRUE(st.ok()) << st;
    Connect();
  }

  // After a crash: no active snapshot is left, each chain name that exists is committed on
  // the one below it (and every one below it exists), and the directories match the records.
  // Returns how many of `chain` exist.
  size_t ExpectCommittedPrefixOnly(const std::vector<std::string>& chain) {
    size_t prefix = 0;
    for (const snapshots::Info& info : All(*sn_, ctx_)) {
      EXPECT_EQ(info.kind, snapshots::Kind::kCommitted) << "left after the restart: " << info.name;
    }
    for (size_t i = 0; i < chain.size(); ++i) {
      absl::StatusOr<snapshots::Info> info = sn_->Stat(ctx_, chain[i]);
      if (!info.ok()) {
        EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound) << info.status();
        continue;
      }
      EXPECT_EQ(prefix, i) << chain[i] << " exists above a missing layer";
      EXPECT_EQ(info->parent, i == 0 ? "" : chain[i - 1]);
      prefix = i + 1;
    }
    ExpectDiskMatchesRecords();
    return prefix;
  }

  TempDir dir_;
  std::unique_ptr<Contentd> contentd_;
  std::unique_ptr<Snapshotd> snapshotd_;
  std::unique_ptr<snapshots::GrpcSnapshotter> sn_;
  std::unique_ptr<diff::GrpcDiff> differ_;
  const Context ctx_{"crash", ""};
};

TEST_F(SnapshotdCrashTest, KilledDuringApply) {
  constexpr int kFiles = 20000;
  oci::Descriptor layer = MakeLayer(kFiles);
  absl::StatusOr<std::vector<mount::Mount>> mounts = sn_->Prepare(ctx_, "extract-1", "", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  const std::string upper = UpperOf(*mounts);
  ASSERT_FALSE(upper.empty());

  absl::StatusOr<oci::Descriptor> applied;
  std::thread apply([&] { applied = differ_->Apply(ctx_, layer, *mounts); });
  // Kill once extraction is under way, well before it can finish.
  bool started = testing::WaitFor([&] { return CountTree(upper, 50) >= 50; }, absl::Seconds(60));
  snapshotd_->Kill();
  apply.join();
  ASSERT_TRUE(started) << "extraction never started; log:\n" << snapshotd_->ReadLog();
  ASSERT_FALSE(applied.ok()) << "the layer was applied before the kill; make it bigger";
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kUnavailable) << applied.status();
  ASSERT_LT(CountTree(upper, kFiles), kFiles) << "the extraction finished anyway";

  ASSERT_NO_FATAL_FAILURE(Restart());
  // The interrupted snapshot is still the active one the client made: nothing got committed.
  absl::StatusOr<snapshots::Info> info = sn_->Stat(ctx_, "extract-1");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kind, snapshots::Kind::kActive);
  for (const snapshots::Info& i : All(*sn_, ctx_)) {
    EXPECT_NE(i.kind, snapshots::Kind::kCommitted) << i.name;
  }
  ExpectDiskMatchesRecords();
  // Nothing of the apply is mounted.
  absl::StatusOr<std::string> mountinfo = ReadFile("/proc/self/mountinfo");
  ASSERT_TRUE(mountinfo.ok());
  EXPECT_THAT(*mountinfo, Not(HasSubstr(dir_.path())));

  // The client's recovery (containerd's unpacker does the same): remove, then start over.
  ASSERT_TRUE(sn_->Remove(ctx_, "extract-1").ok());
  ASSERT_TRUE(sn_->Cleanup(ctx_).ok());
  EXPECT_TRUE(Entries(snapshotd_->root() + "/snapshots").empty());
  mounts = sn_->Prepare(ctx_, "extract-2", "", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  applied = differ_->Apply(ctx_, layer, *mounts);
  ASSERT_TRUE(applied.ok()) << applied.status() << snapshotd_->ReadLog();
  ASSERT_TRUE(sn_->Commit(ctx_, "layer-1", "extract-2", {}).ok());
  absl::StatusOr<std::vector<mount::Mount>> view = sn_->View(ctx_, "check", "layer-1", {});
  ASSERT_TRUE(view.ok()) << view.status();
  ExpectDiskMatchesRecords();
}

// An Unpack killed while its layers are being extracted leaves active snapshots no client
// knows of (the unpacker's temporary keys); snapshotd removes them when it starts again, and the
// same unpack then completes.
TEST_F(SnapshotdCrashTest, KilledDuringUnpackLeavesNoTemporarySnapshot) {
  constexpr int kFiles = 20000;
  oci::Descriptor layer = MakeLayer(kFiles);
  const std::string snapshots_dir = snapshotd_->root() + "/snapshots";
  absl::StatusOr<std::vector<oci::Descriptor>> applied;
  std::thread unpack([&] {
    snapshots::GrpcUnpacker unpacker(Dial(snapshotd_->address()));
    applied = unpacker.Unpack(ctx_, {layer, layer}, {"chain-1", "chain-2"}, {});
  });
  // Kill once extraction is under way in one of the unpack's snapshots.
  bool started = testing::WaitFor(
      [&] {
        for (const std::string& entry : Entries(snapshots_dir)) {
          if (CountTree(absl::StrCat(snapshots_dir, "/", entry, "/fs"), 50) >= 50) {
            return true;
          }
        }
        return false;
      },
      absl::Seconds(60));
  snapshotd_->Kill();
  unpack.join();
  ASSERT_TRUE(started) << "extraction never started; log:\n" << snapshotd_->ReadLog();
  ASSERT_FALSE(applied.ok()) << "the unpack finished before the kill; make the layer bigger";
  ASSERT_FALSE(Entries(snapshots_dir).empty()) << "the kill left nothing to recover from";

  ASSERT_NO_FATAL_FAILURE(Restart());
  for (const snapshots::Info& info : All(*sn_, ctx_)) {
    ADD_FAILURE() << "left after the restart: " << info.name;
  }
  ExpectDiskMatchesRecords();

  snapshots::GrpcUnpacker unpacker(Dial(snapshotd_->address()));
  applied = unpacker.Unpack(ctx_, {layer, layer}, {"chain-1", "chain-2"}, {});
  ASSERT_TRUE(applied.ok()) << applied.status() << snapshotd_->ReadLog();
  std::vector<std::string> names;
  for (const snapshots::Info& info : All(*sn_, ctx_)) {
    names.push_back(info.name);
    EXPECT_EQ(info.kind, snapshots::Kind::kCommitted) << info.name;
  }
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("chain-1", "chain-2"));
  ExpectDiskMatchesRecords();
}

TEST_F(SnapshotdCrashTest, KilledDuringCommits) {
  constexpr int kSnapshots = 200;
  for (int i = 0; i < kSnapshots; ++i) {
    ASSERT_TRUE(sn_->Prepare(ctx_, absl::StrCat("active-", i), "", {}).ok());
  }
  std::atomic<int> committed{0};
  std::thread committer([&] {
    for (int i = 0; i < kSnapshots; ++i) {
      if (!sn_->Commit(ctx_, absl::StrCat("layer-", i), absl::StrCat("active-", i), {}).ok()) {
        return;
      }
      committed.fetch_add(1);
    }
  });
  ASSERT_TRUE(testing::WaitFor([&] { return committed.load() >= 5; }, absl::Seconds(60)));
  snapshotd_->Kill();
  committer.join();
  ASSERT_LT(committed.load(), kSnapshots) << "every commit finished before the kill";

  ASSERT_NO_FATAL_FAILURE(Restart());
  int actives = 0;
  int names = 0;
  for (int i = 0; i < kSnapshots; ++i) {
    absl::StatusOr<snapshots::Info> key = sn_->Stat(ctx_, absl::StrCat("active-", i));
    absl::StatusOr<snapshots::Info> name = sn_->Stat(ctx_, absl::StrCat("layer-", i));
    EXPECT_NE(key.ok(), name.ok()) << "snapshot " << i << ": exactly one of key and name";
    if (key.ok()) {
      EXPECT_EQ(key->kind, snapshots::Kind::kActive);
      ++actives;
    }
    if (name.ok()) {
      EXPECT_EQ(name->kind, snapshots::Kind::kCommitted);
      ++names;
    }
  }
  EXPECT_GE(names, committed.load());
  EXPECT_EQ(actives + names, kSnapshots);
  ExpectDiskMatchesRecords();
}

// The unpacker prepares every layer's snapshot in one transaction, then commits the applied
// runs of the chain in one transaction each. Killed right after the prepare (crash point
// unpack-prepared) or right after a commit (unpack-committed), snapshotd comes back with only a
// committed prefix of the chain and no temporary snapshot, and the same unpack then completes
// on that prefix.
TEST_F(SnapshotdCrashTest, KilledBetweenTheUnpacksBatchesKeepsACommittedPrefix) {
  oci::Descriptor layer = MakeLayer(200);
  const std::vector<oci::Descriptor> layers(4, layer);
  const std::vector<std::string> chain = {"chain-1", "chain-2", "chain-3", "chain-4"};
  for (const std::string point : {"unpack-prepared", "unpack-committed"}) {
    SCOPED_TRACE(point);
    ASSERT_NO_FATAL_FAILURE(RestartWithCrashPoint(point));
    {
      snapshots::GrpcUnpacker unpacker(Dial(snapshotd_->address()));
      absl::StatusOr<std::unique_ptr<snapshots::UnpackSession>> session =
          unpacker.Start(ctx_, layers, chain, {});
      if (session.ok()) {
        // The lower two only: the kill comes after their commit, with the rest still active.
        (void)(*session)->Ready(0);
        (void)(*session)->Ready(1);
      }
      ASSERT_TRUE(testing::WaitFor(
          [&] { return absl::IsUnavailable(sn_->Stat(ctx_, "any").status()); },
          absl::Seconds(60)))
          << "snapshotd did not die at " << point << "; log:\n" << snapshotd_->ReadLog();
    }
    ASSERT_NO_FATAL_FAILURE(RestartWithCrashPoint(""));
    size_t prefix = ExpectCommittedPrefixOnly(chain);
    if (std::string(point) == "unpack-prepared") {
      EXPECT_EQ(prefix, 0u);
    } else {
      EXPECT_GE(prefix, 1u);
      EXPECT_LE(prefix, 2u);
    }
    snapshots::GrpcUnpacker unpacker(Dial(snapshotd_->address()));
    absl::StatusOr<std::vector<oci::Descriptor>> applied =
        unpacker.Unpack(ctx_, layers, chain, {});
    ASSERT_TRUE(applied.ok()) << applied.status() << snapshotd_->ReadLog();
    EXPECT_EQ(ExpectCommittedPrefixOnly(chain), chain.size());
    for (size_t i = chain.size(); i-- > 0;) {
      ASSERT_TRUE(sn_->Remove(ctx_, chain[i]).ok());
    }
  }
}

TEST_F(SnapshotdCrashTest, CleanupRemovesDirectoriesNoRecordOwns) {
  ASSERT_TRUE(sn_->Prepare(ctx_, "kept", "", {}).ok());
  const std::string snapshots_dir = snapshotd_->root() + "/snapshots";
  std::set<std::string> before = Entries(snapshots_dir);
  // What a crash in the middle of Prepare or Remove leaves, and a stray id.
  for (const char* name : {"tmp-crashed", "removed-77", "9999"}) {
    std::string path = snapshots_dir + "/" + name;
    ASSERT_EQ(mkdir(path.c_str(), 0700), 0) << path;
    ASSERT_EQ(mkdir((path + "/fs").c_str(), 0755), 0);
    int code = -1;
    testing::RunCommand(absl::StrCat("echo x > ", path, "/fs/file"), &code);
    ASSERT_EQ(code, 0);
  }
  ASSERT_TRUE(sn_->Cleanup(ctx_).ok());
  EXPECT_EQ(Entries(snapshots_dir), before);
  EXPECT_TRUE(sn_->Stat(ctx_, "kept").ok());
  ExpectDiskMatchesRecords();
}

}  // namespace
}  // namespace berth::integration
