// containerd's `ctr snapshots` commands, and berth's own `berth snapshot` commands, pointed at
// snapshotd's socket: ls, prepare, view, mounts, commit, info, label, usage, tree, rm, and the
// errors a user sees. The snapshotter name ctr sends is arbitrary: snapshotd serves its one
// snapshotter under any name.

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "integration/harness.h"
#include "integration/snapshotd_harness.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

// One row of `ctr snapshots usage`: "KEY  <size> <unit>  INODES" (ctr's progress.Bytes, e.g.
// "8.0 KiB" or "10 B").
struct UsageRow {
  int64_t bytes = -1;
  int64_t inodes = -1;
};
std::map<std::string, UsageRow> UsageRows(const std::string& output) {
  std::map<std::string, UsageRow> rows;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() != 4 || f[0] == "KEY") {
      continue;
    }
    double number = 0;
    UsageRow row;
    if (!absl::SimpleAtod(f[1], &number) || !absl::SimpleAtoi(f[3], &row.inodes)) {
      continue;
    }
    static const std::map<std::string, double> kUnits = {
        {"B", 1}, {"KiB", 1024}, {"MiB", 1024.0 * 1024}, {"GiB", 1024.0 * 1024 * 1024}};
    auto unit = kUnits.find(f[2]);
    if (unit == kUnits.end()) {
      continue;
    }
    row.bytes = static_cast<int64_t>(number * unit->second);
    rows[f[0]] = row;
  }
  return rows;
}

class CtrSnapshotsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    Snapshotd::Options options;
    options.snapshotter = GetParam();
    snapshotd_ = std::make_unique<Snapshotd>(dir_.path(), options);
    absl::Status status = snapshotd_->Start();
    ASSERT_TRUE(status.ok()) << status;
  }
  void TearDown() override {
    // A test that failed between mounting and unmounting must not leave the mount behind.
    testing::RunCommand(absl::StrCat("! mountpoint -q ", dir_.Join("mnt"), " || umount ",
                                     dir_.Join("mnt")));
    EXPECT_EQ(WEXITSTATUS(snapshotd_->Stop()), 0) << snapshotd_->ReadLog();
  }

  // `ctr --address <snapshotd> -n ns snapshots --snapshotter berth args...`
  CommandResult Snapshots(const std::vector<std::string>& args) {
    std::vector<std::string> full = {"snapshots", "--snapshotter", "berth"};
    full.insert(full.end(), args.begin(), args.end());
    return Ctr(snapshotd_->address(), "ns1", full);
  }
  // `berth --snapshotd-address <snapshotd> -n ns1 snapshot args...`
  CommandResult Berth(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {testing::BinaryPath("tools/berth/berth"),
                                     "--snapshotd-address", snapshotd_->address(), "-n", "ns1",
                                     "snapshot"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult result;
    result.output = testing::RunCommand(argv, &result.exit_code);
    return result;
  }

  TempDir dir_;
  std::unique_ptr<Snapshotd> snapshotd_;
};

TEST_P(CtrSnapshotsTest, CtrDrivesEveryCommand) {
  CommandResult r = Snapshots({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("KEY"));

  r = Snapshots({"prepare", "base"});
  ASSERT_EQ(r.exit_code, 0) << r.output << snapshotd_->ReadLog();

  // The mount commands ctr prints work: write a file into the snapshot through them.
  r = Snapshots({"mounts", dir_.Join("mnt"), "base"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("mount -t "));
  ASSERT_EQ(mkdir(dir_.Join("mnt").c_str(), 0755), 0);
  int code = -1;
  std::string out = testing::RunCommand(
      absl::StrCat(absl::StripAsciiWhitespace(r.output), " && echo layer-one > ",
                   dir_.Join("mnt/file"), " && umount ", dir_.Join("mnt")),
      &code);
  ASSERT_EQ(code, 0) << out << "\nmount command: " << r.output;

  r = Snapshots({"commit", "layer1", "base"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Snapshots({"prepare", "work", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Snapshots({"view", "ro", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The view sees the committed file.
  r = Snapshots({"mounts", dir_.Join("mnt"), "ro"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  out = testing::RunCommand(absl::StrCat(absl::StripAsciiWhitespace(r.output), " && cat ",
                                         dir_.Join("mnt/file"), " && umount ", dir_.Join("mnt")),
                            &code);
  ASSERT_EQ(code, 0) << out << "\nmount command: " << r.output;
  EXPECT_THAT(out, HasSubstr("layer-one"));

  r = Snapshots({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("layer1"));
  EXPECT_THAT(r.output, HasSubstr("Committed"));
  EXPECT_THAT(r.output, HasSubstr("Active"));
  EXPECT_THAT(r.output, HasSubstr("View"));
  EXPECT_THAT(r.output, Not(HasSubstr("base")));  // the key is gone after commit

  r = Snapshots({"tree"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("layer1"));
  EXPECT_THAT(r.output, HasSubstr("\\_ work"));
  EXPECT_THAT(r.output, HasSubstr("\\_ ro"));

  // Usage as ctr prints it (KEY, SIZE as "<n> <unit>", INODES): layer1 holds its root
  // directory and the 10-byte file; the fresh active snapshot on it only its root directory
  // with overlay, a copy of layer1 with native.
  r = Snapshots({"usage"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, UsageRow> usage = UsageRows(r.output);
  ASSERT_EQ(usage.count("layer1"), 1u) << r.output;
  EXPECT_EQ(usage["layer1"].inodes, 2) << r.output;
  EXPECT_GE(usage["layer1"].bytes, 10) << r.output;
  ASSERT_EQ(usage.count("work"), 1u) << r.output;
  if (GetParam() == "native") {
    EXPECT_EQ(usage["work"].inodes, 2) << r.output;
    EXPECT_EQ(usage["work"].bytes, usage["layer1"].bytes) << r.output;
  } else {
    EXPECT_EQ(usage["work"].inodes, 1) << r.output;
    EXPECT_LT(usage["work"].bytes, usage["layer1"].bytes) << r.output;
  }

  r = Snapshots({"info", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\"Committed\""));
  r = Snapshots({"label", "layer1", "team=storage"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Snapshots({"info", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\"team\": \"storage\""));

  // Errors a user sees.
  r = Snapshots({"prepare", "work", "layer1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("already exists"));
  r = Snapshots({"prepare", "orphan", "no-such-parent"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("not found"));
  r = Snapshots({"commit", "again", "ro"});
  EXPECT_NE(r.exit_code, 0) << "a view cannot be committed";
  r = Snapshots({"rm", "layer1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("failed precondition"));

  r = Snapshots({"rm", "work", "ro"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Snapshots({"rm", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Snapshots({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("layer1")));

  // Another namespace never saw any of it; and nothing is mounted any more.
  CommandResult other = Ctr(snapshotd_->address(), "ns2", {"snapshots", "ls"});
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_THAT(other.output, HasSubstr("KEY"));
  EXPECT_THAT(other.output, Not(HasSubstr("layer1")));
  absl::StatusOr<std::string> mountinfo = ReadFile("/proc/self/mountinfo");
  ASSERT_TRUE(mountinfo.ok());
  EXPECT_THAT(*mountinfo, Not(HasSubstr(dir_.path())));
}

TEST_P(CtrSnapshotsTest, BerthDrivesEveryCommand) {
  CommandResult r = Berth({"prepare", "base", "--label", "a=b"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Berth({"mounts", "/mnt", "base"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("mount -t "));
  r = Berth({"commit", "layer1", "base"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Berth({"prepare", "work", "layer1", "--target", "/mnt"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/mnt"));
  r = Berth({"view", "ro", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;

  r = Berth({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("KEY"));
  EXPECT_THAT(r.output, HasSubstr("Committed"));
  r = Berth({"ls", "-q", "kind==view"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "ro\n");
  r = Berth({"tree"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "layer1\n \\_ ro\n \\_ work\n");
  r = Berth({"usage", "-b", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("layer1"));

  // The same through ctr: both clients see one snapshotd.
  CommandResult ctr = Snapshots({"ls"});
  EXPECT_THAT(ctr.output, HasSubstr("work"));

  r = Berth({"prepare", "work"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("berth: snapshot work"));
  r = Berth({"rm", "layer1"});
  EXPECT_EQ(r.exit_code, 1);
  r = Berth({"rm", "ro", "work", "layer1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Berth({"ls", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
}

INSTANTIATE_TEST_SUITE_P(Snapshotters, CtrSnapshotsTest, ::testing::Values("overlayfs", "native"));

}  // namespace
}  // namespace berth::integration
