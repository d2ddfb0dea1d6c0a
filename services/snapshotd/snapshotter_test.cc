// The shared Snapshotter suite against both local snapshotters, and what only the local ones
// promise: crash safety and Cleanup, events, leases, reopening, the on-disk layout.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <atomic>
#include <filesystem>
#include <thread>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "containerd/events/snapshot.pb.h"
#include "lib/events/publisher.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/snapshotter_testsuite.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/snapshotter_factory.h"

namespace berth::snapshotd {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
namespace suite = ::berth::snapshots::suite;

template <const char* kKind>
struct LocalHarness {
  LocalHarness() {
    SnapshotterOptions options;
    options.root = dir.Join("root");
    options.kind = kKind;
    absl::StatusOr<std::unique_ptr<snapshots::Snapshotter>> s = OpenSnapshotter(options);
    if (!s.ok()) {
      ADD_FAILURE() << s.status();
      std::abort();
    }
    sn = std::move(*s);
  }
  ~LocalHarness() {
    sn.reset();
    // Directories of removed snapshots are gone right away; nothing temporary stays.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir.Join("root/snapshots"), ec)) {
      std::string name = e.path().filename().string();
      EXPECT_FALSE(absl::StartsWith(name, "tmp-") || absl::StartsWith(name, "removed-"))
          << name << " left behind";
    }
  }
  snapshots::Snapshotter& snapshotter() { return *sn; }
  static constexpr bool kCopiesParent = std::string_view(kKind) == "native";

  testing::TempDir dir;
  std::unique_ptr<snapshots::Snapshotter> sn;
};

constexpr char kOverlay[] = "overlayfs";
constexpr char kNative[] = "native";
using OverlayHarness = LocalHarness<kOverlay>;
using NativeHarness = LocalHarness<kNative>;

}  // namespace
}  // namespace berth::snapshotd

namespace berth::snapshots {
INSTANTIATE_TYPED_TEST_SUITE_P(Overlay, SnapshotterTest,
                               ::testing::Types<snapshotd::OverlayHarness>);
INSTANTIATE_TYPED_TEST_SUITE_P(Native, SnapshotterTest,
                               ::testing::Types<snapshotd::NativeHarness>);
}  // namespace berth::snapshots

namespace berth::snapshotd {
namespace {

class RecordingPublisher : public events::Publisher {
 public:
  absl::Status Publish(absl::string_view ns, absl::string_view topic,
                       const google::protobuf::Message& event) override {
    absl::MutexLock lock(&mu_);
    std::string detail;
    if (const auto* p = dynamic_cast<const containerd::events::SnapshotPrepare*>(&event)) {
      detail = absl::StrCat(p->key(), "<-", p->parent());
    } else if (const auto* c = dynamic_cast<const containerd::events::SnapshotCommit*>(&event)) {
      detail = absl::StrCat(c->key(), "->", c->name());
    } else if (const auto* r = dynamic_cast<const containerd::events::SnapshotRemove*>(&event)) {
      detail = r->key();
    }
    events_.push_back(absl::StrCat(ns, " ", topic, " ", detail));
    return absl::OkStatus();
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_;
};

// Counts mounts and can refuse them.
class FakeMounter : public mount::Mounter {
 public:
  absl::Status MountAll(const std::vector<mount::Mount>& mounts,
                        const std::string& target) override {
    ++mounts_;
    return fail_ ? absl::InternalError("no overlay here") : absl::OkStatus();
  }
  absl::Status Unmount(const std::string& target) override { return absl::OkStatus(); }
  bool fail_ = false;
  int mounts_ = 0;
};

std::set<std::string> SnapshotDirs(const std::string& root) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root + "/snapshots", ec)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

class LocalSnapshotterTest : public ::testing::TestWithParam<std::string> {
 protected:
  SnapshotterOptions Options() {
    SnapshotterOptions options;
    options.root = dir_.Join("root");
    options.kind = GetParam();
    options.publisher = &publisher_;
    return options;
  }
  std::unique_ptr<LocalSnapshotter> Open() {
    absl::StatusOr<std::unique_ptr<LocalSnapshotter>> s = OpenLocalSnapshotter(Options());
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::string root() { return dir_.Join("root"); }

  testing::TempDir dir_;
  RecordingPublisher publisher_;
  const Context ctx_{"default", ""};
};

TEST_P(LocalSnapshotterTest, PublishesPrepareCommitRemove) {
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  ASSERT_TRUE(sn->Prepare(ctx_, "a", "", {}).ok());
  ASSERT_TRUE(sn->Commit(ctx_, "base", "a", {}).ok());
  ASSERT_TRUE(sn->View(ctx_, "v", "base", {}).ok());
  ASSERT_TRUE(sn->Remove(ctx_, "v").ok());
  EXPECT_FALSE(sn->Prepare(ctx_, "v2", "missing", {}).ok());
  EXPECT_THAT(publisher_.events(),
              ElementsAre("default /snapshot/prepare a<-", "default /snapshot/commit a->base",
                          "default /snapshot/prepare v<-base", "default /snapshot/remove v"));
}

TEST_P(LocalSnapshotterTest, RecordsWhatALeaseCreated) {
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  const Context leased{"default", "lease-1"};
  ASSERT_TRUE(sn->Prepare(leased, "a", "", {}).ok());
  ASSERT_TRUE(sn->Prepare(ctx_, "b", "", {}).ok());
  EXPECT_THAT(*sn->LeaseResources(leased), ElementsAre("a"));
  // Commit moves the key's record to the name (and records the name under the caller's lease).
  ASSERT_TRUE(sn->Commit(ctx_, "base", "a", {}).ok());
  EXPECT_THAT(*sn->LeaseResources(leased), ElementsAre("base"));
  ASSERT_TRUE(sn->Commit(Context{"default", "lease-2"}, "base-b", "b", {}).ok());
  EXPECT_THAT(*sn->LeaseResources(Context{"default", "lease-2"}), ElementsAre("base-b"));
  ASSERT_TRUE(sn->View(leased, "v", "base", {}).ok());
  EXPECT_THAT(*sn->LeaseResources(leased), ElementsAre("base", "v"));
  ASSERT_TRUE(sn->Remove(ctx_, "v").ok());
  EXPECT_THAT(*sn->LeaseResources(leased), ElementsAre("base"));
  EXPECT_THAT(*sn->LeaseResources(Context{"other", "lease-1"}), IsEmpty());
}

TEST_P(LocalSnapshotterTest, LayoutAndUpperDir) {
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  absl::StatusOr<std::vector<mount::Mount>> m = sn->Prepare(ctx_, "a", "", {});
  ASSERT_TRUE(m.ok());
  absl::StatusOr<std::string> upper = sn->UpperDir(ctx_, "a");
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_EQ(*upper, root() + "/snapshots/1/fs");
  EXPECT_EQ(mount::WritableDir(*m), *upper);
  ASSERT_TRUE(suite::WriteFile(*upper + "/f", "data"));
  ASSERT_TRUE(sn->Commit(ctx_, "base", "a", {}).ok());
  EXPECT_EQ(sn->UpperDir(ctx_, "base").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(suite::ReadFile(root() + "/snapshots/1/fs/f"), "data") << "commit copies nothing";

  absl::StatusOr<std::vector<mount::Mount>> child = sn->Prepare(ctx_, "c", "base", {});
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(mount::WritableDir(*child), root() + "/snapshots/2/fs");
  if (GetParam() == "overlayfs") {
    ASSERT_EQ(child->size(), 1u);
    EXPECT_EQ((*child)[0].type, "overlay");
    EXPECT_THAT((*child)[0].options,
                ElementsAre("workdir=" + root() + "/snapshots/2/work",
                            "upperdir=" + root() + "/snapshots/2/fs",
                            "lowerdir=" + root() + "/snapshots/1/fs"));
  } else {
    EXPECT_EQ(suite::ReadFile(root() + "/snapshots/2/fs/f"), "data") << "native copies";
  }
  ASSERT_TRUE(sn->Remove(ctx_, "c").ok());
  EXPECT_EQ(SnapshotDirs(root()), (std::set<std::string>{"1"}));
}

TEST_P(LocalSnapshotterTest, MetadataSurvivesReopen) {
  {
    auto sn = Open();
    ASSERT_NE(sn, nullptr);
    ASSERT_TRUE(sn->Prepare(ctx_, "a", "", {{"k", "v"}}).ok());
    ASSERT_TRUE(sn->Commit(ctx_, "base", "a", {{"k", "v"}}).ok());
    ASSERT_TRUE(sn->Prepare(ctx_, "b", "base", {}).ok());
    // One snapshotter per root.
    EXPECT_EQ(OpenLocalSnapshotter(Options()).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  absl::StatusOr<snapshots::Info> b = sn->Stat(ctx_, "b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->parent, "base");
  EXPECT_EQ(sn->Stat(ctx_, "base")->labels.at("k"), "v");
  // Ids are not reused after a Remove.
  ASSERT_TRUE(sn->Remove(ctx_, "b").ok());
  ASSERT_TRUE(sn->Prepare(ctx_, "c", "base", {}).ok());
  EXPECT_EQ(*sn->UpperDir(ctx_, "c"), root() + "/snapshots/3/fs");
}

TEST_P(LocalSnapshotterTest, CleanupRemovesWhatNoRecordOwns) {
  {
    auto sn = Open();
    ASSERT_NE(sn, nullptr);
    ASSERT_TRUE(sn->Prepare(ctx_, "a", "", {}).ok());
  }
  // What a crash can leave: a half-filled tmp dir, a dir whose record never committed, a
  // half-deleted removed-* dir (with overlay's unreadable work/work inside).
  for (const char* d : {"tmp-1-1", "tmp-1-1/fs", "7", "7/fs", "removed-3", "removed-3/work",
                        "removed-3/work/work"}) {
    ASSERT_EQ(::mkdir((root() + "/snapshots/" + d).c_str(), 0755), 0) << d;
  }
  ASSERT_EQ(::chmod((root() + "/snapshots/removed-3/work/work").c_str(), 0), 0);
  ASSERT_TRUE(suite::WriteFile(root() + "/snapshots/7/fs/file", "x"));
  auto sn = Open();  // Open runs Cleanup
  ASSERT_NE(sn, nullptr);
  EXPECT_EQ(SnapshotDirs(root()), (std::set<std::string>{"1"}));

  ASSERT_EQ(::mkdir((root() + "/snapshots/tmp-2-2").c_str(), 0755), 0);
  EXPECT_TRUE(sn->Cleanup(ctx_).ok());
  EXPECT_EQ(SnapshotDirs(root()), (std::set<std::string>{"1"}));
  EXPECT_TRUE(sn->Stat(ctx_, "a").ok());
}

// A crash where a record insert never committed leaves a dir with the id the next insert gets
// (sqlite hands out a rolled-back id again); Prepare must still succeed.
TEST_P(LocalSnapshotterTest, PrepareSurvivesAStaleDirWithItsId) {
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  ASSERT_EQ(::mkdir((root() + "/snapshots/1").c_str(), 0755), 0);
  ASSERT_TRUE(suite::WriteFile(root() + "/snapshots/1/stale", "x"));
  ASSERT_TRUE(sn->Prepare(ctx_, "a", "", {}).ok());
  EXPECT_EQ(*sn->UpperDir(ctx_, "a"), root() + "/snapshots/1/fs");
  EXPECT_FALSE(suite::Exists(root() + "/snapshots/1/stale"));
  ASSERT_TRUE(sn->Cleanup(ctx_).ok());
  EXPECT_EQ(SnapshotDirs(root()), (std::set<std::string>{"1"}));
}

// SIGKILL a child in the middle of a stream of Prepare/Commit/Remove calls (with files to
// copy, so some land inside Populate); after reopening, every record has its directory, no
// directory lacks a record, and everything still works.
TEST_P(LocalSnapshotterTest, SigkillDuringWorkLeavesNothingHalfMade) {
  {
    auto sn = Open();
    ASSERT_NE(sn, nullptr);
    absl::StatusOr<std::vector<mount::Mount>> m = sn->Prepare(ctx_, "seed", "", {});
    ASSERT_TRUE(m.ok());
    std::string upper = *sn->UpperDir(ctx_, "seed");
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(suite::WriteFile(absl::StrCat(upper, "/f", i), std::string(4096, 'x')));
    }
    ASSERT_TRUE(sn->Commit(ctx_, "base", "seed", {}).ok());
  }
  for (int round = 0; round < 3; ++round) {
    std::string progress = dir_.Join(absl::StrCat("progress-", round));
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      absl::StatusOr<std::unique_ptr<LocalSnapshotter>> s = OpenLocalSnapshotter(Options());
      if (!s.ok()) {
        ::_exit(2);
      }
      for (int i = 0;; ++i) {
        std::string key = absl::StrCat("r", round, "-", i);
        (void)(*s)->Prepare(ctx_, key, "base", {});
        (void)(*s)->Commit(ctx_, key + "-c", key, {});
        if (i % 3 == 0) {
          (void)(*s)->Remove(ctx_, key + "-c");
        }
        if (i == 3) {
          suite::WriteFile(progress, "going");
        }
      }
    }
    ASSERT_TRUE(testing::WaitFor([&] { return suite::Exists(progress); }, absl::Seconds(60)));
    // Let it run a little into its next calls, then kill it mid-flight.
    ::usleep(static_cast<useconds_t>(1000 * (7 + 13 * round)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));

    auto sn = Open();
    ASSERT_NE(sn, nullptr);
    std::set<std::string> expected;
    absl::Status walked = sn->Walk(ctx_, {}, [&](const snapshots::Info& info) {
      absl::StatusOr<std::string> upper = info.kind == snapshots::Kind::kActive
                                              ? sn->UpperDir(ctx_, info.name)
                                              : absl::StatusOr<std::string>("");
      EXPECT_TRUE(upper.ok());
      return absl::OkStatus();
    });
    ASSERT_TRUE(walked.ok());
    int records = 0;
    ASSERT_TRUE(sn->Walk(ctx_, {}, [&](const snapshots::Info&) {
                    ++records;
                    return absl::OkStatus();
                  }).ok());
    std::set<std::string> dirs = SnapshotDirs(root());
    for (const std::string& d : dirs) {
      EXPECT_FALSE(absl::StartsWith(d, "tmp-") || absl::StartsWith(d, "removed-")) << d;
      EXPECT_TRUE(suite::Exists(root() + "/snapshots/" + d + "/fs")) << d;
    }
    EXPECT_EQ(static_cast<int>(dirs.size()), records) << "one directory per record";
    // Every snapshot is whole: the copies of the native one have all 200 files.
    ASSERT_TRUE(sn->Walk(ctx_, {"kind==committed"}, [&](const snapshots::Info& info) {
                    if (info.name == "base" || GetParam() != "native") {
                      return absl::OkStatus();
                    }
                    std::string key = info.name + "-check";
                    EXPECT_TRUE(sn->Prepare(ctx_, key, info.name, {}).ok());
                    std::string upper = *sn->UpperDir(ctx_, key);
                    EXPECT_TRUE(suite::Exists(upper + "/f199")) << info.name;
                    EXPECT_TRUE(sn->Remove(ctx_, key).ok());
                    return absl::OkStatus();
                  }).ok());
    EXPECT_TRUE(sn->Prepare(ctx_, absl::StrCat("after-", round), "base", {}).ok());
  }
}

TEST_P(LocalSnapshotterTest, ConcurrentCallsKeepRecordsAndDirectoriesInStep) {
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  ASSERT_TRUE(sn->Prepare(ctx_, "a", "", {}).ok());
  ASSERT_TRUE(suite::WriteFile(*sn->UpperDir(ctx_, "a") + "/f", "x"));
  ASSERT_TRUE(sn->Commit(ctx_, "base", "a", {}).ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 15; ++i) {
        std::string key = absl::StrCat("t", t, "-", i);
        // Every thread also races for one shared key: exactly one Prepare of it wins.
        absl::StatusOr<std::vector<mount::Mount>> shared =
            sn->Prepare(ctx_, absl::StrCat("shared-", i), "base", {});
        if (!shared.ok() && shared.status().code() != absl::StatusCode::kAlreadyExists) {
          ++failures;
        }
        if (!sn->Prepare(ctx_, key, "base", {}).ok() ||
            !sn->Commit(ctx_, key + "-c", key, {}).ok() || !sn->Remove(ctx_, key + "-c").ok()) {
          ++failures;
        }
        if (t == 0 && i % 5 == 0 && !sn->Cleanup(ctx_).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  int records = 0;
  ASSERT_TRUE(sn->Walk(ctx_, {}, [&](const snapshots::Info&) {
                  ++records;
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(records, 1 + 15);
  EXPECT_EQ(static_cast<int>(SnapshotDirs(root()).size()), records);
}

TEST_P(LocalSnapshotterTest, UnknownKindIsInvalidArgument) {
  SnapshotterOptions options = Options();
  options.kind = "zfs";
  EXPECT_EQ(OpenSnapshotter(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.kind = GetParam();
  options.root = "relative/root";
  EXPECT_EQ(OpenSnapshotter(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(LocalSnapshotterTest, BadNamespaceIsInvalidArgument) {
  auto sn = Open();
  ASSERT_NE(sn, nullptr);
  EXPECT_EQ(sn->Prepare(Context{"", ""}, "a", "", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sn->Stat(Context{"no spaces", ""}, "a").status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Kinds, LocalSnapshotterTest, ::testing::Values("overlayfs", "native"));

TEST(OverlaySnapshotterTest, OpenChecksOverlayWithTheMounter) {
  testing::TempDir dir;
  FakeMounter mounter;
  SnapshotterOptions options;
  options.root = dir.Join("root");
  options.mounter = &mounter;
  {
    absl::StatusOr<std::unique_ptr<snapshots::Snapshotter>> s = OpenSnapshotter(options);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(mounter.mounts_, 1);
  }
  mounter.fail_ = true;
  absl::StatusOr<std::unique_ptr<snapshots::Snapshotter>> s = OpenSnapshotter(options);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SnapshotDirs(options.root), std::set<std::string>{}) << "the check leaves nothing";
}

}  // namespace
}  // namespace berth::snapshotd
