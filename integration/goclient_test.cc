// containerd's own Go client against berth (issue 10 and 11's containerd interop): the program
// integration/goclient/main.go, built with the tests from Debian's containerd 1.6 Go sources
// (GOPATH mode, offline; integration/CMakeLists.txt), wired to the real daemons service by service as DESIGN.md says:
// content, leases and namespaces on contentd, the "overlayfs" snapshotter on snapshotd, images
// on imaged, containers and tasks on execd. It lists and tags the image berth imported, and runs
// a container the way containerd's client does (a snapshot prepared on the image's chain, the
// rootfs mounts from snapshotd passed to execd's Tasks.Create, real runc under berth-shim);
// ctr pointed at execd lists it and kills it. Each test checks afterwards, through the daemons'
// own APIs, that nothing is left: no record, task, snapshot or mount.

#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "integration/ctr_records.h"
#include "integration/execd_probes.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "lib/base/grpc_client.h"
#include "lib/images/grpc_image_store.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr char kImage[] = "docker.io/test/busybox:v1";

class GoClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = stack_.Start();
    ASSERT_TRUE(started.ok()) << started;
    started = execd_.StartServing(
        "execd",
        {testing::BinaryPath("services/execd/execd"), "--root", dir_.Join("execd-root"),
         "--state", dir_.Join("execd-state"), "--address", execd_address_,
         "--contentd-address", stack_.contentd.address(), "--snapshotd-address",
         stack_.snapshotd.address(), "--log-level", "debug"},
        execd_address_);
    ASSERT_TRUE(started.ok()) << started;
    absl::Status imported = stack_.ImportBusybox("test/busybox:v1");
    ASSERT_TRUE(imported.ok()) << imported;
    baseline_snapshots_ = Snapshots();
  }

  void TearDown() override {
    // Nothing a test made may outlive it: its task killed and deleted, its record removed.
    if (!execd_.running()) {
      return;
    }
    for (const std::string& id : Containers()) {
      Ctr({"tasks", "rm", "-f", id});
      Ctr({"containers", "rm", id});
    }
  }

  // berth-goclient with every daemon's address, then `args`.
  std::vector<std::string> GoClient(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {goclient_,
                                     "-contentd", stack_.contentd.address(),
                                     "-snapshotd", stack_.snapshotd.address(),
                                     "-imaged", stack_.address,
                                     "-execd", execd_address_,
                                     "-fifo-dir", dir_.Join("fifo")};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  CommandResult RunGoClient(const std::vector<std::string>& args) const {
    CommandResult result;
    result.output = testing::RunCommand(GoClient(args), &result.exit_code);
    return result;
  }

  // `ctr --address execd.sock` in the Go client's namespace.
  CommandResult Ctr(const std::vector<std::string>& args) const {
    return integration::Ctr(execd_address_, "default", args);
  }

  std::vector<std::string> Containers() const { return ContainerIds(execd_address_, "default"); }
  std::vector<std::string> Snapshots() const {
    return SnapshotKeys(stack_.snapshotd.address(), "default");
  }

  // No record, task, snapshot (beyond the image's chain) or mount is left.
  void ExpectNothingLeft() {
    EXPECT_THAT(Containers(), ::testing::IsEmpty());
    EXPECT_THAT(TaskIds(execd_address_, "default"), ::testing::IsEmpty());
    EXPECT_EQ(Snapshots(), baseline_snapshots_);
    EXPECT_THAT(MountsContaining({dir_.path()}), ::testing::IsEmpty());
  }

  testing::TempDir dir_;
  ImagedStack stack_{dir_.path()};
  std::string execd_address_ = dir_.Join("execd.sock");
  DaemonProcess execd_{dir_.path()};
  std::string goclient_ = testing::BinaryPath("integration/berth-goclient");
  std::vector<std::string> baseline_snapshots_;
};

TEST_F(GoClientTest, ListsAndTagsTheImagesBerthImported) {
  images::GrpcImageStore images(Dial(stack_.address));
  absl::StatusOr<images::Image> image = images.Get(ProbeContext("default"), kImage);
  ASSERT_TRUE(image.ok()) << image.status();
  const std::string digest = image->target.digest.ToString();

  CommandResult go = RunGoClient({"images", kImage, "example.com/goclient:1"});
  ASSERT_EQ(go.exit_code, 0) << go.output;
  EXPECT_THAT(go.output, HasSubstr(absl::StrCat("image ", kImage, " ", digest, "\n")));
  EXPECT_THAT(go.output, HasSubstr(absl::StrCat("tagged example.com/goclient:1 ", digest)));
  // The tag is imaged's record, as ctr and berth's own client see it.
  absl::StatusOr<images::Image> tagged = images.Get(ProbeContext("default"), "example.com/goclient:1");
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->target.digest, image->target.digest);
  EXPECT_EQ(tagged->target.size, image->target.size);
  CommandResult ls = integration::Ctr(stack_.address, "default", {"images", "ls", "-q"});
  EXPECT_THAT(Lines(ls.output), ::testing::ElementsAre("docker.io/test/busybox:v1",
                                                       "example.com/goclient:1"));

  // An image that is not there: the client's error, no record made.
  go = RunGoClient({"images", "docker.io/test/missing:1", "example.com/nothing:1"});
  EXPECT_NE(go.exit_code, 0);
  EXPECT_THAT(go.output, HasSubstr("not found")) << go.output;
  EXPECT_EQ(images.Get(ProbeContext("default"), "example.com/nothing:1").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(GoClientTest, RunsExecsKillsAndDeletesAContainerOnSnapshotdMounts) {
  CommandResult go = RunGoClient({"run", kImage, "gc-run"});
  ASSERT_EQ(go.exit_code, 0) << go.output << execd_.ReadLog();
  // Each step as the program printed it: the Exec's own exit code and stdio, then the task's
  // SIGTERM handler's exit code (the signal reached the process), then both deletes.
  EXPECT_THAT(go.output, HasSubstr("container gc-run snapshot gc-run-snapshot\n"));
  EXPECT_THAT(go.output, ContainsRegex("task started pid [1-9][0-9]*\n"));
  EXPECT_THAT(go.output, HasSubstr("exec exited 3\nexec output ok\n"));
  EXPECT_THAT(go.output, HasSubstr("task exited 42\ntask deleted\ncontainer deleted\n"));
  ExpectNothingLeft();
}

TEST_F(GoClientTest, CtrListsAndKillsTheGoClientsContainer) {
  testing::Process go(GoClient({"-kill", "external", "run", kImage, "gc-ext"}), dir_.path());
  ASSERT_TRUE(testing::WaitFor(
      [&] { return absl::StrContains(go.ReadLog(), "running gc-ext\n") || go.TryReap(); },
      absl::Seconds(120)))
      << go.ReadLog();
  ASSERT_TRUE(go.running()) << go.ReadLog() << execd_.ReadLog();

  CommandResult ls = Ctr({"containers", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(ls.output, ContainsRegex("gc-ext +docker.io/test/busybox:v1 +io.containerd.runc.v2"));
  // The task's pid as the Go client saw it at Start.
  std::string log = go.ReadLog();
  size_t at = log.find("task started pid ");
  ASSERT_NE(at, std::string::npos) << log;
  std::string pid = log.substr(at + 17, log.find('\n', at) - at - 17);
  ls = Ctr({"tasks", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(ls.output, ContainsRegex(absl::StrCat("gc-ext +", pid, " +RUNNING"))) << ls.output;

  CommandResult kill = Ctr({"tasks", "kill", "gc-ext"});  // SIGTERM, ctr's default
  ASSERT_EQ(kill.exit_code, 0) << kill.output;
  int status = 0;
  ASSERT_TRUE(go.WaitFor(absl::Seconds(60), &status)) << go.ReadLog();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << go.ReadLog();
  EXPECT_THAT(go.ReadLog(), HasSubstr("task exited 42\ntask deleted\ncontainer deleted\n"));
  ExpectNothingLeft();
}

// containerd's client takes a lease for NewContainer and deletes it once the record is made; the
// container's snapshot must then stay while the container does, through snapshotd's collection
// (which an image delete with --sync runs in the namespace).
TEST_F(GoClientTest, ARunningContainersSnapshotSurvivesACollection) {
  CommandResult tag = RunGoClient({"images", kImage, "example.com/doomed:1"});
  ASSERT_EQ(tag.exit_code, 0) << tag.output;
  testing::Process go(GoClient({"-kill", "external", "run", kImage, "gc-keep"}), dir_.path());
  ASSERT_TRUE(testing::WaitFor(
      [&] { return absl::StrContains(go.ReadLog(), "running gc-keep\n") || go.TryReap(); },
      absl::Seconds(120)))
      << go.ReadLog();
  ASSERT_TRUE(go.running()) << go.ReadLog();
  CommandResult rm = integration::Ctr(stack_.address, "default",
                                      {"images", "rm", "--sync", "example.com/doomed:1"});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  std::vector<std::string> keys = Snapshots();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "gc-keep-snapshot"), keys.end())
      << absl::StrJoin(keys, ", ") << stack_.snapshotd.ReadLog();
  ASSERT_EQ(Ctr({"tasks", "kill", "gc-keep"}).exit_code, 0);
  int status = 0;
  ASSERT_TRUE(go.WaitFor(absl::Seconds(60), &status)) << go.ReadLog();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << go.ReadLog();
  ExpectNothingLeft();
}

}  // namespace
}  // namespace berth::integration
