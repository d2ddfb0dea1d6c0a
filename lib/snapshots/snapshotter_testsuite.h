#pragma once

// The one conformance suite for snapshots::Snapshotter (after containerd's
// snapshots/testsuite): every implementation runs it, the local snapshotters directly and the
// gRPC client against a real snapshotd, which proves the wire loses nothing. Tests that mount
// (through mount::SystemMounter, on this host) need root and are skipped otherwise; every mount
// a test makes is undone, and the suite fails a test that leaves one behind.
//
// Usage, in a test .cc that links gtest, berth_mount and berth_testing:
//   struct MyHarness {
//     MyHarness();                             // a fresh, empty snapshotter
//     snapshots::Snapshotter& snapshotter();
//     // Whether a snapshot's directory holds a copy of its parent's files (native) rather
//     // than only its own changes (overlay): what its usage counts.
//     static constexpr bool kCopiesParent = false;
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mine, SnapshotterTest, ::testing::Types<MyHarness>);

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "lib/base/context.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::snapshots {

namespace suite {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path);
  out << data;
  out.close();
  return out.good();
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Mount points at or below `dir` in /proc/self/mountinfo.
inline int MountsBelow(const std::string& dir) {
  std::istringstream in(ReadFile("/proc/self/mountinfo"));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.find(absl::StrCat(" ", dir, "/")) != std::string::npos) {
      ++n;
    }
  }
  return n;
}

}  // namespace suite

template <typename Harness>
class SnapshotterTest : public ::testing::Test {
 protected:
  Snapshotter& sn() { return harness_.snapshotter(); }

  void TearDown() override {
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) {
      absl::Status st = mount::SystemMounter().Unmount(*it);
      EXPECT_TRUE(st.ok()) << st;
    }
    mounted_.clear();
    EXPECT_EQ(suite::MountsBelow(dir_.path()), 0) << "a test left a mount behind";
  }

  static bool CanMount() { return ::geteuid() == 0; }

  // Mounts `mounts` at a fresh directory and returns it; TearDown unmounts it if the test
  // does not (Unmount).
  std::string MountAt(const std::vector<mount::Mount>& mounts) {
    std::string target = dir_.Join(absl::StrCat("m", ++mount_count_));
    EXPECT_EQ(::mkdir(target.c_str(), 0755), 0);
    absl::Status st = mount::SystemMounter().MountAll(mounts, target);
    EXPECT_TRUE(st.ok()) << st;
    if (st.ok()) {
      mounted_.push_back(target);
    }
    return target;
  }

  void Unmount(const std::string& target) {
    absl::Status st = mount::SystemMounter().Unmount(target);
    EXPECT_TRUE(st.ok()) << st;
    mounted_.erase(std::remove(mounted_.begin(), mounted_.end(), target), mounted_.end());
  }

  // Prepares `key` on `parent`, writes `files` (name -> content) through a mount, commits it
  // as `name`.
  void Layer(const std::string& name, const std::string& parent,
             const std::map<std::string, std::string>& files, const Context* ctx = nullptr) {
    const Context& c = ctx != nullptr ? *ctx : ctx_;
    std::string key = absl::StrCat(name, "-active");
    absl::StatusOr<std::vector<mount::Mount>> mounts = sn().Prepare(c, key, parent, {});
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    std::string at = MountAt(*mounts);
    for (const auto& [file, data] : files) {
      ASSERT_TRUE(suite::WriteFile(absl::StrCat(at, "/", file), data)) << file;
    }
    Unmount(at);
    absl::Status st = sn().Commit(c, name, key, {});
    ASSERT_TRUE(st.ok()) << st;
  }

  std::set<std::string> Walked(const Context& ctx, const std::vector<std::string>& filters) {
    std::set<std::string> seen;
    absl::Status st = sn().Walk(ctx, filters, [&](const Info& info) {
      seen.insert(info.name);
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    return seen;
  }

  Harness harness_;
  const Context ctx_{"suite", ""};
  testing::TempDir dir_;
  std::vector<std::string> mounted_;
  int mount_count_ = 0;
};

TYPED_TEST_SUITE_P(SnapshotterTest);

#define BERTH_REQUIRE_MOUNT()                  \
  if (!TestFixture::CanMount()) {              \
    GTEST_SKIP() << "mounting needs root";     \
  }

TYPED_TEST_P(SnapshotterTest, PrepareCommitViewChain) {
  BERTH_REQUIRE_MOUNT();
  this->Layer("base", "", {{"a", "from base"}});
  this->Layer("mid", "base", {{"b", "from mid"}});

  absl::StatusOr<Info> base = this->sn().Stat(this->ctx_, "base");
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->kind, Kind::kCommitted);
  EXPECT_EQ(base->parent, "");
  absl::StatusOr<Info> mid = this->sn().Stat(this->ctx_, "mid");
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->kind, Kind::kCommitted);
  EXPECT_EQ(mid->parent, "base");
  EXPECT_EQ(this->sn().Stat(this->ctx_, "mid-active").status().code(),
            absl::StatusCode::kNotFound)
      << "a committed key is gone";

  // A grandchild sees both layers and writes on top.
  absl::StatusOr<std::vector<mount::Mount>> top =
      this->sn().Prepare(this->ctx_, "top", "mid", {{"x", "1"}});
  ASSERT_TRUE(top.ok()) << top.status();
  absl::StatusOr<Info> info = this->sn().Stat(this->ctx_, "top");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kActive);
  EXPECT_EQ(info->parent, "mid");
  EXPECT_EQ(info->labels.at("x"), "1");
  std::string at = this->MountAt(*top);
  EXPECT_EQ(suite::ReadFile(at + "/a"), "from base");
  EXPECT_EQ(suite::ReadFile(at + "/b"), "from mid");
  EXPECT_TRUE(suite::WriteFile(at + "/c", "from top"));
  this->Unmount(at);

  // Mounts() gives the same view again.
  absl::StatusOr<std::vector<mount::Mount>> again = this->sn().Mounts(this->ctx_, "top");
  ASSERT_TRUE(again.ok()) << again.status();
  at = this->MountAt(*again);
  EXPECT_EQ(suite::ReadFile(at + "/c"), "from top");
  this->Unmount(at);

  // A view of mid is read-only and does not see top's file.
  absl::StatusOr<std::vector<mount::Mount>> view = this->sn().View(this->ctx_, "v", "mid", {});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(this->sn().Stat(this->ctx_, "v")->kind, Kind::kView);
  at = this->MountAt(*view);
  EXPECT_EQ(suite::ReadFile(at + "/a"), "from base");
  EXPECT_EQ(suite::ReadFile(at + "/b"), "from mid");
  EXPECT_FALSE(suite::Exists(at + "/c"));
  int fd = ::open((at + "/new").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd, -1) << "a view is read-only";
  if (fd >= 0) {
    ::close(fd);
  }
  this->Unmount(at);

  // A view of a one-layer parent.
  absl::StatusOr<std::vector<mount::Mount>> view1 = this->sn().View(this->ctx_, "v1", "base", {});
  ASSERT_TRUE(view1.ok()) << view1.status();
  at = this->MountAt(*view1);
  EXPECT_EQ(suite::ReadFile(at + "/a"), "from base");
  EXPECT_FALSE(suite::Exists(at + "/b"));
  this->Unmount(at);
}

TYPED_TEST_P(SnapshotterTest, DeletingAParentFileHidesItInTheCommittedChild) {
  BERTH_REQUIRE_MOUNT();
  this->Layer("base", "", {{"gone", "x"}, {"kept", "y"}});
  absl::StatusOr<std::vector<mount::Mount>> child =
      this->sn().Prepare(this->ctx_, "child", "base", {});
  ASSERT_TRUE(child.ok()) << child.status();
  std::string at = this->MountAt(*child);
  ASSERT_EQ(::unlink((at + "/gone").c_str()), 0);
  this->Unmount(at);
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "next", "child", {}).ok());

  absl::StatusOr<std::vector<mount::Mount>> view = this->sn().View(this->ctx_, "v", "next", {});
  ASSERT_TRUE(view.ok()) << view.status();
  at = this->MountAt(*view);
  EXPECT_FALSE(suite::Exists(at + "/gone"));
  EXPECT_EQ(suite::ReadFile(at + "/kept"), "y");
  this->Unmount(at);

  absl::StatusOr<std::vector<mount::Mount>> grandchild =
      this->sn().Prepare(this->ctx_, "gc", "next", {});
  ASSERT_TRUE(grandchild.ok()) << grandchild.status();
  at = this->MountAt(*grandchild);
  EXPECT_FALSE(suite::Exists(at + "/gone"));
  EXPECT_EQ(suite::ReadFile(at + "/kept"), "y");
  this->Unmount(at);
}

TYPED_TEST_P(SnapshotterTest, RemoveWithChildrenIsFailedPrecondition) {
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "a", "", {}).ok());
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "base", "a", {}).ok());
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "child", "base", {}).ok());
  EXPECT_EQ(this->sn().Remove(this->ctx_, "base").code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(this->sn().View(this->ctx_, "view", "base", {}).ok());
  EXPECT_TRUE(this->sn().Remove(this->ctx_, "child").ok());
  EXPECT_EQ(this->sn().Remove(this->ctx_, "base").code(), absl::StatusCode::kFailedPrecondition)
      << "a view is a child too";
  EXPECT_TRUE(this->sn().Remove(this->ctx_, "view").ok());
  EXPECT_TRUE(this->sn().Remove(this->ctx_, "base").ok());
  EXPECT_EQ(this->sn().Stat(this->ctx_, "base").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->sn().Remove(this->ctx_, "base").code(), absl::StatusCode::kNotFound);
  // The key can be used again.
  EXPECT_TRUE(this->sn().Prepare(this->ctx_, "child", "", {}).ok());
}

TYPED_TEST_P(SnapshotterTest, PrepareOnAnExistingKeyIsAlreadyExists) {
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "k", "", {}).ok());
  EXPECT_EQ(this->sn().Prepare(this->ctx_, "k", "", {}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->sn().View(this->ctx_, "k", "", {}).status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "name", "k", {}).ok());
  EXPECT_EQ(this->sn().Prepare(this->ctx_, "name", "", {}).status().code(),
            absl::StatusCode::kAlreadyExists)
      << "keys and names share one namespace";
}

TYPED_TEST_P(SnapshotterTest, CommitErrors) {
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "a", "", {}).ok());
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "base", "a", {}).ok());
  ASSERT_TRUE(this->sn().View(this->ctx_, "view", "base", {}).ok());
  EXPECT_EQ(this->sn().Commit(this->ctx_, "x", "view", {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(this->sn().Commit(this->ctx_, "x", "base", {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(this->sn().Commit(this->ctx_, "x", "missing", {}).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "b", "base", {}).ok());
  EXPECT_EQ(this->sn().Commit(this->ctx_, "base", "b", {}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->sn().Stat(this->ctx_, "b")->kind, Kind::kActive)
      << "a failed commit changes nothing";
  EXPECT_EQ(this->sn().Mounts(this->ctx_, "base").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(this->sn().Mounts(this->ctx_, "missing").status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST_P(SnapshotterTest, ParentErrors) {
  EXPECT_EQ(this->sn().Prepare(this->ctx_, "k", "missing", {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->sn().View(this->ctx_, "k", "missing", {}).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "active", "", {}).ok());
  EXPECT_EQ(this->sn().Prepare(this->ctx_, "k", "active", {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(this->sn().Stat(this->ctx_, "k").status().code(), absl::StatusCode::kNotFound)
      << "nothing left behind";
  bool any = false;
  ASSERT_TRUE(this->sn()
                  .Walk(this->ctx_, {"name==k"},
                        [&](const Info&) {
                          any = true;
                          return absl::OkStatus();
                        })
                  .ok());
  EXPECT_FALSE(any);
}

TYPED_TEST_P(SnapshotterTest, EmptyKeyIsInvalidArgument) {
  EXPECT_EQ(this->sn().Prepare(this->ctx_, "", "", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->sn().View(this->ctx_, "", "", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "k", "", {}).ok());
  EXPECT_EQ(this->sn().Commit(this->ctx_, "", "k", {}).code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(SnapshotterTest, WalkFilters) {
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "a", "", {}).ok());
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "base", "a", {{"tier", "bottom"}}).ok());
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "work", "base", {{"tier", "top"}}).ok());
  ASSERT_TRUE(this->sn().View(this->ctx_, "look", "base", {{"other", "x"}}).ok());

  using Set = std::set<std::string>;
  EXPECT_EQ(this->Walked(this->ctx_, {}), (Set{"base", "work", "look"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"name==work"}), (Set{"work"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"parent==base"}), (Set{"work", "look"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"kind==committed"}), (Set{"base"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"kind==active"}), (Set{"work"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"kind==view"}), (Set{"look"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.tier==top"}), (Set{"work"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.tier"}), (Set{"base", "work"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.tier!=top"}), (Set{"base", "look"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"name~=^b"}), (Set{"base"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"parent==base,labels.other==x"}), (Set{"look"}));
  EXPECT_EQ(this->Walked(this->ctx_, {"kind==view", "kind==committed"}), (Set{"base", "look"}));
  absl::Status st =
      this->sn().Walk(this->ctx_, {"name=="}, [](const Info&) { return absl::OkStatus(); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(SnapshotterTest, UsageCountsOwnLayer) {
  BERTH_REQUIRE_MOUNT();
  absl::StatusOr<std::vector<mount::Mount>> m = this->sn().Prepare(this->ctx_, "a", "", {});
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<Usage> empty = this->sn().GetUsage(this->ctx_, "a");
  ASSERT_TRUE(empty.ok()) << empty.status();
  std::string at = this->MountAt(*m);
  ASSERT_TRUE(suite::WriteFile(at + "/big", std::string(1 << 20, 'x')));
  ASSERT_EQ(::mkdir((at + "/d").c_str(), 0755), 0);
  ASSERT_TRUE(suite::WriteFile(at + "/d/small", "s"));
  this->Unmount(at);
  absl::StatusOr<Usage> active = this->sn().GetUsage(this->ctx_, "a");
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_GE(active->size, empty->size + (1 << 20));
  EXPECT_EQ(active->inodes, empty->inodes + 3);
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "base", "a", {}).ok());
  absl::StatusOr<Usage> committed = this->sn().GetUsage(this->ctx_, "base");
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->size, active->size);
  EXPECT_EQ(committed->inodes, active->inodes);

  // A child's usage: a layered snapshotter (overlay) counts the child's own changes only; a
  // copying one (native) counts the copy of its parent too. The harness says which.
  absl::StatusOr<std::vector<mount::Mount>> child =
      this->sn().Prepare(this->ctx_, "child", "base", {});
  ASSERT_TRUE(child.ok());
  at = this->MountAt(*child);
  ASSERT_TRUE(suite::WriteFile(at + "/more", std::string(1 << 16, 'y')));
  this->Unmount(at);
  absl::StatusOr<Usage> cu = this->sn().GetUsage(this->ctx_, "child");
  ASSERT_TRUE(cu.ok());
  if (TypeParam::kCopiesParent) {
    EXPECT_GE(cu->size, committed->size + (1 << 16));
    EXPECT_EQ(cu->inodes, committed->inodes + 1);
  } else {
    EXPECT_GE(cu->size, 1 << 16);
    EXPECT_LT(cu->size, 1 << 20) << "the parent's 1 MiB file was counted";
    EXPECT_EQ(cu->inodes, empty->inodes + 1);
  }
  EXPECT_EQ(this->sn().GetUsage(this->ctx_, "missing").status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST_P(SnapshotterTest, UpdateLabelsWithFieldpaths) {
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "k", "", {{"a", "1"}, {"b", "2"}}).ok());
  absl::StatusOr<Info> before = this->sn().Stat(this->ctx_, "k");
  ASSERT_TRUE(before.ok());

  Info change;
  change.name = "k";
  change.labels = {{"a", "10"}, {"c", "3"}};
  absl::StatusOr<Info> one = this->sn().Update(this->ctx_, change, {"labels.a"});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->labels, (Labels{{"a", "10"}, {"b", "2"}}));
  EXPECT_GE(one->updated_at, before->updated_at);
  EXPECT_EQ(one->kind, Kind::kActive);

  absl::StatusOr<Info> removed = this->sn().Update(this->ctx_, change, {"labels.b"});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->labels, (Labels{{"a", "10"}}));

  absl::StatusOr<Info> all = this->sn().Update(this->ctx_, change, {"labels"});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->labels, change.labels);
  change.labels = {{"z", "26"}};
  absl::StatusOr<Info> no_paths = this->sn().Update(this->ctx_, change, {});
  ASSERT_TRUE(no_paths.ok()) << no_paths.status();
  EXPECT_EQ(no_paths->labels, change.labels);
  EXPECT_EQ(this->sn().Stat(this->ctx_, "k")->labels, change.labels);

  EXPECT_EQ(this->sn().Update(this->ctx_, change, {"parent"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  change.name = "missing";
  EXPECT_EQ(this->sn().Update(this->ctx_, change, {}).status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST_P(SnapshotterTest, NamespacesAreIsolated) {
  const Context other{"other", ""};
  ASSERT_TRUE(this->sn().Prepare(this->ctx_, "a", "", {}).ok());
  ASSERT_TRUE(this->sn().Commit(this->ctx_, "base", "a", {}).ok());
  EXPECT_EQ(this->sn().Stat(other, "base").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->sn().Prepare(other, "x", "base", {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->sn().Remove(other, "base").code(), absl::StatusCode::kNotFound);
  // The same key in another namespace is another snapshot.
  ASSERT_TRUE(this->sn().Prepare(other, "a", "", {{"ns", "other"}}).ok());
  EXPECT_EQ(this->Walked(other, {}), (std::set<std::string>{"a"}));
  EXPECT_EQ(this->Walked(this->ctx_, {}), (std::set<std::string>{"base"}));
  EXPECT_EQ(this->sn().Stat(other, "a")->labels.at("ns"), "other");
  EXPECT_TRUE(this->sn().Remove(other, "a").ok());
  EXPECT_TRUE(this->sn().Stat(this->ctx_, "base").ok());
}

// An image of 128 layers mounts (overlay: its options must stay under a page).
TYPED_TEST_P(SnapshotterTest, ChainOf128LayersMounts) {
  BERTH_REQUIRE_MOUNT();
  std::string parent;
  for (int i = 1; i <= 128; ++i) {
    std::string name = absl::StrCat("layer-", i);
    ASSERT_NO_FATAL_FAILURE(this->Layer(
        name, parent, {{absl::StrCat("file-", i), absl::StrCat(i)}, {"top", absl::StrCat(i)}}));
    parent = name;
  }
  absl::StatusOr<std::vector<mount::Mount>> view =
      this->sn().View(this->ctx_, "view", parent, {});
  ASSERT_TRUE(view.ok()) << view.status();
  std::string at = this->MountAt(*view);
  EXPECT_EQ(suite::ReadFile(at + "/top"), "128");
  EXPECT_EQ(suite::ReadFile(at + "/file-1"), "1");
  EXPECT_EQ(suite::ReadFile(at + "/file-64"), "64");
  this->Unmount(at);

  absl::StatusOr<std::vector<mount::Mount>> active =
      this->sn().Prepare(this->ctx_, "run", parent, {});
  ASSERT_TRUE(active.ok()) << active.status();
  at = this->MountAt(*active);
  EXPECT_EQ(suite::ReadFile(at + "/top"), "128");
  EXPECT_TRUE(suite::WriteFile(at + "/top", "129"));
  EXPECT_EQ(suite::ReadFile(at + "/top"), "129");
  this->Unmount(at);
}

TYPED_TEST_P(SnapshotterTest, ViewWithoutParentIsEmptyAndReadOnly) {
  BERTH_REQUIRE_MOUNT();
  absl::StatusOr<std::vector<mount::Mount>> view = this->sn().View(this->ctx_, "v", "", {});
  ASSERT_TRUE(view.ok()) << view.status();
  std::string at = this->MountAt(*view);
  int fd = ::open((at + "/x").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd, -1);
  if (fd >= 0) {
    ::close(fd);
  }
  this->Unmount(at);
}

REGISTER_TYPED_TEST_SUITE_P(SnapshotterTest, PrepareCommitViewChain,
                            DeletingAParentFileHidesItInTheCommittedChild,
                            RemoveWithChildrenIsFailedPrecondition,
                            PrepareOnAnExistingKeyIsAlreadyExists, CommitErrors, ParentErrors,
                            EmptyKeyIsInvalidArgument, WalkFilters, UsageCountsOwnLayer,
                            UpdateLabelsWithFieldpaths, NamespacesAreIsolated,
                            ChainOf128LayersMounts, ViewWithoutParentIsEmptyAndReadOnly);

#undef BERTH_REQUIRE_MOUNT

}  // namespace berth::snapshots
