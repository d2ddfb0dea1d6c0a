#include "lib/base/posix.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"

namespace berth {
namespace {

class PosixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-posix-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(PosixTest, ErrnoStatusKeepsTheCategoryAndNamesTheThing) {
  absl::Status st = ErrnoStatus(ENOENT, "open /x");
  EXPECT_TRUE(absl::IsNotFound(st));
  EXPECT_EQ(st.message(), absl::StrCat("open /x: ", strerror(ENOENT)));
  EXPECT_TRUE(absl::IsAlreadyExists(ErrnoStatus(EEXIST, "x")));
  EXPECT_TRUE(absl::IsPermissionDenied(ErrnoStatus(EACCES, "x")));
  EXPECT_TRUE(absl::IsResourceExhausted(ErrnoStatus(ENOSPC, "x")));
}

TEST_F(PosixTest, MakeDirsCreatesParentsWithTheirModeAndToleratesExisting) {
  umask(022);
  std::string path = dir_ + "/a/b/c";
  ASSERT_TRUE(MakeDirs(path, 0700).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((dir_ + "/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  EXPECT_TRUE(MakeDirs(path, 0700).ok());

  ASSERT_TRUE(WriteFileAtomic(dir_ + "/file", "x", 0600).ok());
  absl::Status not_dir = MakeDirs(dir_ + "/file", 0700);
  EXPECT_TRUE(absl::IsFailedPrecondition(not_dir)) << not_dir;
  EXPECT_TRUE(absl::IsInvalidArgument(MakeDirs("", 0700)));
}

TEST_F(PosixTest, WriteFileAtomicReplacesWholeAndLeavesNoTemporary) {
  // Without the fsyncs (kVolatile) the file is replaced the same way.
  for (Durability durability : {Durability::kDurable, Durability::kVolatile}) {
    std::string path = dir_ + (durability == Durability::kDurable ? "/f" : "/v");
    ASSERT_TRUE(WriteFileAtomic(path, "first", 0600, durability).ok());
    ASSERT_TRUE(WriteFileAtomic(path, "second, longer", 0644, durability).ok());
    absl::StatusOr<std::string> read = ReadFile(path);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, "second, longer");
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
    ::unlink(path.c_str());
    // Nothing else is in the directory: no <path>.tmp-* left.
    EXPECT_EQ(std::system(("test $(ls -A " + dir_ + " | wc -l) -eq 0").c_str()), 0);
  }
}

TEST_F(PosixTest, WriteFileAtomicIntoAMissingDirectoryFailsAndSaysWhere) {
  absl::Status st = WriteFileAtomic(dir_ + "/missing/f", "x", 0600);
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_NE(st.message().find(dir_ + "/missing/f.tmp-"), std::string::npos) << st;
  EXPECT_TRUE(absl::IsNotFound(ReadFile(dir_ + "/nope").status()));
}

TEST(UniqueFdTest, ClosesOnceAndMovesOwnership) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    UniqueFd a(fds[0]);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), fds[0]);
    EXPECT_NE(fcntl(fds[0], F_GETFD), -1);
  }
  EXPECT_EQ(fcntl(fds[0], F_GETFD), -1);  // closed when b died
  UniqueFd w(fds[1]);
  int raw = w.Release();
  EXPECT_FALSE(w.valid());
  EXPECT_NE(fcntl(raw, F_GETFD), -1);  // Release did not close it
  close(raw);
}

TEST(RandomTest, IdsHaveTheirShapeAndDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string uuid = NewUuid();
    ASSERT_EQ(uuid.size(), 36u);
    EXPECT_EQ(uuid[14], '4');
    EXPECT_NE(std::string("89ab").find(uuid[19]), std::string::npos) << uuid;
    EXPECT_TRUE(seen.insert(uuid).second);
    std::string hex = RandomHex(12);
    EXPECT_EQ(hex.size(), 24u);
    EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_TRUE(seen.insert(hex).second);
  }
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(x, " is odd"));
  }
  return x / 2;
}

absl::StatusOr<int> Quarter(int x, int* evaluations) {
  ++*evaluations;
  BERTH_ASSIGN_OR_RETURN(int half, Half(x));
  BERTH_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  BERTH_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, ReturnTheFirstErrorUnchanged) {
  int evaluations = 0;
  absl::StatusOr<int> q = Quarter(8, &evaluations);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 2);
  absl::StatusOr<int> odd = Quarter(6, &evaluations);
  EXPECT_TRUE(absl::IsInvalidArgument(odd.status()));
  EXPECT_EQ(odd.status().message(), "3 is odd");
  EXPECT_EQ(evaluations, 2);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).message(), "5 is odd");
}

}  // namespace
}  // namespace berth
