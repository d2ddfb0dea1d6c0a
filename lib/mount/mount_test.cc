#include "lib/mount/mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/testing/testing.h"

namespace berth::mount {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path);
  out << data;
}

// Mount points below `dir` in /proc/self/mountinfo.
int MountsBelow(const std::string& dir) {
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

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root";
    }
  }
  void TearDown() override {
    if (::geteuid() == 0) {
      EXPECT_EQ(MountsBelow(dir_.path()), 0) << "a test left a mount behind";
    }
  }
  testing::TempDir dir_;
};

TEST(ParseOptionsTest, SplitsFlagsPropagationAndData) {
  ParsedOptions p = ParseOptions({"ro", "rbind", "nosuid", "rprivate", "lowerdir=/a:/b", "x=1"});
  EXPECT_EQ(p.flags, static_cast<unsigned long>(MS_RDONLY | MS_BIND | MS_REC | MS_NOSUID));
  EXPECT_EQ(p.propagation, static_cast<unsigned long>(MS_PRIVATE | MS_REC));
  EXPECT_EQ(p.data, "lowerdir=/a:/b,x=1");
  EXPECT_EQ(ParseOptions({"ro", "rw"}).flags, 0u);
}

TEST(CompactLowerdirsTest, RewritesRelativeToCommonParent) {
  std::vector<std::string> options = {"workdir=/r/snapshots/20/work",
                                      "upperdir=/r/snapshots/20/fs",
                                      "lowerdir=/r/snapshots/19/fs:/r/snapshots/1/fs:/r/snapshots/2/fs"};
  EXPECT_EQ(CompactLowerdirs(&options), "/r/snapshots/");
  EXPECT_THAT(options, ElementsAre("workdir=/r/snapshots/20/work", "upperdir=/r/snapshots/20/fs",
                                   "lowerdir=19/fs:1/fs:2/fs"));

  std::vector<std::string> one = {"lowerdir=/r/snapshots/1/fs"};
  EXPECT_EQ(CompactLowerdirs(&one), "");
  std::vector<std::string> disjoint = {"lowerdir=/a/fs:/b/fs"};
  EXPECT_EQ(CompactLowerdirs(&disjoint), "");
  EXPECT_THAT(disjoint, ElementsAre("lowerdir=/a/fs:/b/fs"));
}

TEST(WritableDirTest, BindSourceOrOverlayUpper) {
  EXPECT_EQ(WritableDir({{"bind", "/s/1/fs", "", {"rw", "rbind"}}}), "/s/1/fs");
  EXPECT_EQ(WritableDir({{"bind", "/s/1/fs", "", {"ro", "rbind"}}}), std::nullopt);
  EXPECT_EQ(WritableDir({{"overlay", "overlay", "",
                          {"workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"}}}),
            "/s/2/fs");
  EXPECT_EQ(WritableDir({{"overlay", "overlay", "", {"lowerdir=/s/2/fs:/s/1/fs"}}}),
            std::nullopt);
  EXPECT_EQ(WritableDir({}), std::nullopt);
}

TEST_F(MountTest, BindReadWriteAndReadOnly) {
  std::string src = dir_.Join("src");
  std::string rw = dir_.Join("rw");
  std::string ro = dir_.Join("ro");
  for (const std::string& d : {src, rw, ro}) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  }
  WriteFile(src + "/a", "hello");
  Mounter& m = SystemMounter();
  ASSERT_TRUE(m.MountAll({{"bind", src, "", {"rw", "rbind"}}}, rw).ok());
  ASSERT_TRUE(m.MountAll({{"bind", src, "", {"ro", "rbind"}}}, ro).ok());
  EXPECT_EQ(ReadFile(rw + "/a"), "hello");
  WriteFile(rw + "/b", "via rw");
  EXPECT_EQ(ReadFile(src + "/b"), "via rw");
  EXPECT_EQ(ReadFile(ro + "/b"), "via rw");
  int fd = ::open((ro + "/c").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_TRUE(m.Unmount(rw).ok());
  EXPECT_TRUE(m.Unmount(ro).ok());
  EXPECT_TRUE(m.Unmount(ro).ok()) << "unmounting what is not mounted is OK";
  EXPECT_FALSE(::access((rw + "/a").c_str(), F_OK) == 0);
}

TEST_F(MountTest, UnmountTakesOffStackedMounts) {
  std::string a = dir_.Join("a");
  std::string b = dir_.Join("b");
  std::string t = dir_.Join("t");
  for (const std::string& d : {a, b, t}) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  }
  ASSERT_TRUE(SystemMounter()
                  .MountAll({{"bind", a, "", {"rbind"}}, {"bind", b, "", {"ro", "rbind"}}}, t)
                  .ok());
  EXPECT_EQ(MountsBelow(dir_.path()), 2);
  EXPECT_TRUE(SystemMounter().Unmount(t).ok());
}

TEST_F(MountTest, FailedMountAllUnmountsWhatItMounted) {
  std::string a = dir_.Join("a");
  std::string t = dir_.Join("t");
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(t.c_str(), 0755), 0);
  absl::Status st = SystemMounter().MountAll(
      {{"bind", a, "", {"rbind"}}, {"bind", dir_.Join("missing"), "", {"rbind"}}}, t);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("missing"));
  EXPECT_EQ(MountsBelow(dir_.path()), 0);
}

// 128 lowerdirs under a long root: the absolute option string is far above a page, so the
// mounter must compact it (relative lowerdirs, mounted from their common parent).
TEST_F(MountTest, OverlayWith128LowerdirsUnderALongPath) {
  std::string root = dir_.Join(std::string(60, 'r'));
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  std::string snaps = root + "/snapshots";
  ASSERT_EQ(::mkdir(snaps.c_str(), 0755), 0);
  std::vector<std::string> lowers;
  for (int i = 1; i <= 128; ++i) {
    std::string d = absl::StrCat(snaps, "/", i);
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((d + "/fs").c_str(), 0755), 0);
    WriteFile(absl::StrCat(d, "/fs/layer-", i), absl::StrCat(i));
    WriteFile(d + "/fs/top", absl::StrCat(i));
    lowers.insert(lowers.begin(), d + "/fs");  // nearest first
  }
  std::string upper = snaps + "/129";
  ASSERT_EQ(::mkdir(upper.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((upper + "/fs").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((upper + "/work").c_str(), 0755), 0);
  std::string lowerdir = absl::StrCat("lowerdir=", absl::StrJoin(lowers, ":"));
  ASSERT_GT(lowerdir.size(), 4096u);
  std::string target = dir_.Join("merged");
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  char cwd_before[4096];
  ASSERT_NE(::getcwd(cwd_before, sizeof(cwd_before)), nullptr);
  absl::Status st = SystemMounter().MountAll(
      {{"overlay", "overlay", "",
        {"workdir=" + upper + "/work", "upperdir=" + upper + "/fs", lowerdir}}},
      target);
  ASSERT_TRUE(st.ok()) << st;
  char cwd_after[4096];
  ASSERT_NE(::getcwd(cwd_after, sizeof(cwd_after)), nullptr);
  EXPECT_STREQ(cwd_before, cwd_after) << "the process's cwd must not change";
  EXPECT_EQ(ReadFile(target + "/top"), "128");
  EXPECT_EQ(ReadFile(target + "/layer-1"), "1");
  EXPECT_EQ(ReadFile(target + "/layer-77"), "77");
  WriteFile(target + "/new", "upper");
  EXPECT_EQ(ReadFile(upper + "/fs/new"), "upper");
  EXPECT_TRUE(SystemMounter().Unmount(target).ok());
}

TEST_F(MountTest, RelativeTargetIsRefused) {
  absl::Status st = SystemMounter().MountAll({{"bind", "/tmp", "", {"rbind"}}}, "relative");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::mount
