#include "services/snapshotd/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "lib/testing/testing.h"

namespace berth::snapshotd {
namespace {

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path);
  out << data;
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

std::string GetXattr(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof(buf));
  return n < 0 ? std::string("<none>") : std::string(buf, static_cast<size_t>(n));
}

void SetTimes(const std::string& path, time_t sec) {
  struct timespec times[2] = {{sec, 1000}, {sec + 1, 2000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

TEST(CopyTreeTest, KeepsTypesModesOwnersTimesXattrsAndHardlinks) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "chown and mknod need root";
  }
  testing::TempDir dir;
  std::string src = dir.Join("src");
  std::string dst = dir.Join("dst");
  ASSERT_EQ(::mkdir(src.c_str(), 0750), 0);
  ASSERT_EQ(::mkdir(dst.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((src + "/d").c_str(), 01777), 0);
  ASSERT_EQ(::chmod((src + "/d").c_str(), 01777), 0);
  WriteFile(src + "/d/suid", "#!/bin/sh\n");
  ASSERT_EQ(::chown((src + "/d/suid").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::chmod((src + "/d/suid").c_str(), 04755), 0);
  ASSERT_EQ(::link((src + "/d/suid").c_str(), (src + "/hard").c_str()), 0);
  ASSERT_EQ(::symlink("d/suid", (src + "/link").c_str()), 0);
  ASSERT_EQ(::lchown((src + "/link").c_str(), 42, 43), 0);
  ASSERT_EQ(::mknod((src + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mkfifo((src + "/fifo").c_str(), 0640), 0);
  ASSERT_EQ(::lsetxattr((src + "/d").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(::lsetxattr((src + "/d/suid").c_str(), "user.note", "hi", 2, 0), 0);
  WriteFile(src + "/big", std::string(3 << 20, 'b'));
  SetTimes(src + "/d/suid", 1000000);
  SetTimes(src + "/link", 2000000);
  SetTimes(src + "/d", 3000000);
  SetTimes(src, 4000000);

  ASSERT_TRUE(CopyTree(src, dst).ok());

  struct stat root = Lstat(dst);
  EXPECT_EQ(root.st_mode & 07777, 0750u);
  EXPECT_EQ(root.st_mtim.tv_sec, 4000001);
  struct stat d = Lstat(dst + "/d");
  EXPECT_EQ(d.st_mode & 07777, 01777u);
  EXPECT_EQ(d.st_mtim.tv_sec, 3000001) << "a directory's time survives its children's copy";
  EXPECT_EQ(GetXattr(dst + "/d", "trusted.overlay.opaque"), "y");
  struct stat suid = Lstat(dst + "/d/suid");
  EXPECT_EQ(suid.st_mode & 07777, 04755u);
  EXPECT_EQ(suid.st_uid, 1234u);
  EXPECT_EQ(suid.st_gid, 5678u);
  EXPECT_EQ(suid.st_mtim.tv_sec, 1000001);
  EXPECT_EQ(suid.st_mtim.tv_nsec, 2000);
  EXPECT_EQ(suid.st_nlink, 2u);
  EXPECT_EQ(GetXattr(dst + "/d/suid", "user.note"), "hi");
  EXPECT_EQ(Lstat(dst + "/hard").st_ino, suid.st_ino) << "hard links stay linked";
  struct stat link = Lstat(dst + "/link");
  EXPECT_TRUE(S_ISLNK(link.st_mode));
  EXPECT_EQ(link.st_uid, 42u);
  EXPECT_EQ(link.st_mtim.tv_sec, 2000001);
  char target[64] = {};
  ASSERT_GT(::readlink((dst + "/link").c_str(), target, sizeof(target) - 1), 0);
  EXPECT_STREQ(target, "d/suid");
  struct stat null = Lstat(dst + "/null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISFIFO(Lstat(dst + "/fifo").st_mode));
  EXPECT_EQ(Lstat(dst + "/big").st_size, 3 << 20);
}

TEST(DiskUsageTest, CountsEachInodeOnce) {
  testing::TempDir dir;
  std::string root = dir.Join("t");
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  absl::StatusOr<DiskUsage> empty = ComputeDiskUsage(root);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->inodes, 1);
  WriteFile(root + "/a", std::string(1 << 20, 'a'));
  ASSERT_EQ(::link((root + "/a").c_str(), (root + "/b").c_str()), 0);
  absl::StatusOr<DiskUsage> du = ComputeDiskUsage(root);
  ASSERT_TRUE(du.ok());
  EXPECT_EQ(du->inodes, 2);
  EXPECT_GE(du->size, 1 << 20);
  EXPECT_LT(du->size, 2 << 20);
}

TEST(RemoveTreeTest, RemovesUnreadableDirsAndToleratesMissing) {
  testing::TempDir dir;
  std::string root = dir.Join("t");
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/work").c_str(), 0), 0);
  ASSERT_EQ(::symlink("/etc", (root + "/etc").c_str()), 0);
  ASSERT_TRUE(RemoveTree(root).ok());
  EXPECT_NE(::access(root.c_str(), F_OK), 0);
  EXPECT_EQ(::access("/etc/passwd", F_OK), 0) << "symlinks are not followed";
  EXPECT_TRUE(RemoveTree(root).ok());
}

}  // namespace
}  // namespace berth::snapshotd
