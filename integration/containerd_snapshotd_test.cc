// A real containerd uses snapshotd as a `proxy_plugins` snapshotter (type "snapshot") and
// contentd as its content store (type "content"): `ctr images pull --snapshotter <name>` unpacks
// the image into snapshotd, and `ctr run --snapshotter <name>` (runc) runs it on snapshotd's
// mounts; the container prints what the image's program prints. Proxy clients send no
// namespace header: snapshotd and contentd serve them in their default namespace.
//
// Afterwards nothing is left: no container, no task, no shim, no mount, and once the image is
// removed too, no snapshot in snapshotd.
//
// Sharing one namespace with berth (imaged pulling into it): containerd's collection, which
// removes through the proxies what its own metadata does not name, leaves what berth's images
// hold; and berth's collections (imaged's after `berth images rm`, `berth snapshot gc`,
// `berth content gc`) leave what containerd made or uses.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "integration/snapshotd_harness.h"
#include "lib/base/status_macros.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRepo[] = "test/hello";
constexpr char kProxyNamespace[] = "containerd-proxy";
constexpr char kSnapshotter[] = "berth-snapshotd";

// Pids of processes whose command line contains every one of `needles`.
std::vector<pid_t> ProcessesWith(const std::vector<std::string>& needles) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) {
    return out;
  }
  while (struct dirent* entry = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(atoi(entry->d_name));
    if (pid <= 0) {
      continue;
    }
    absl::StatusOr<std::string> cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (!cmdline.ok()) {
      continue;
    }
    bool all = true;
    for (const std::string& needle : needles) {
      all = all && absl::StrContains(*cmdline, needle);
    }
    if (all) {
      out.push_back(pid);
    }
  }
  closedir(proc);
  return out;
}

// Each test's directory, a registry serving the test images "a" and "b" ("a" plus a layer of
// its own), a containerd namespace of its own (runc's state and the shims stay apart from any
// other containerd on this host), the imaged stack (started by the tests that use it) and the
// containerd a test starts. Containers a test ran are removed before containerd stops.
class ContainerdSnapshotdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = dir_.Join("image");
    absl::Status status = MakeImagesAAndB(layout_);
    ASSERT_TRUE(status.ok()) << status;
    status = registry_.Start();
    ASSERT_TRUE(status.ok()) << status;
    for (const char* tag : {"a", "b"}) {
      status = registry_.Push(layout_, tag, kRepo);
      ASSERT_TRUE(status.ok()) << status;
    }
  }

  void TearDown() override {
    if (containerd_ == nullptr || !containerd_->running()) {
      return;
    }
    for (const std::string& id : containers_) {
      ContainerdCtr({"tasks", "kill", "-s", "SIGKILL", id});
      ContainerdCtr({"tasks", "rm", "-f", id});
      ContainerdCtr({"containers", "rm", id});
    }
    EXPECT_EQ(WEXITSTATUS(containerd_->Stop()), 0) << containerd_->ReadLog();
  }

  std::string Reference(const std::string& tag) const {
    return absl::StrCat(registry_.host(), "/", kRepo, ":", tag);
  }

  // Starts containerd with snapshotd at `snapshot_address` as its proxy snapshotter
  // kSnapshotter and, when `content_address` is set, contentd there as its content store.
  absl::Status StartContainerd(const std::string& content_address,
                               const std::string& snapshot_address) {
    Containerd::Options options;
    options.content_proxy_address = content_address;
    options.snapshot_proxy_address = snapshot_address;
    options.snapshot_proxy_name = kSnapshotter;
    containerd_ = std::make_unique<Containerd>(dir_.path(), options);
    return containerd_->Start();
  }

  CommandResult ContainerdCtr(const std::vector<std::string>& args) const {
    return Ctr(containerd_->address(), ns_, args);
  }

  // `ctr run --rm` of `ref`'s /hello as container `id` on kSnapshotter; returns its output.
  std::string RunHello(const std::string& ref, const std::string& id) {
    containers_.push_back(id);
    CommandResult run = ContainerdCtr({"run", "--rm", "--snapshotter", kSnapshotter, "--fifo-dir",
                                       dir_.Join("fifo"), ref, id, "/hello"});
    EXPECT_EQ(run.exit_code, 0) << run.output << "\ncontainerd log:\n" << containerd_->ReadLog();
    return run.output;
  }

  // `ctr images pull` of `tag` through containerd (it applies the layers into snapshots of its
  // own naming).
  void ContainerdPull(const std::string& tag) {
    CommandResult pull = ContainerdCtr(
        {"images", "pull", "--plain-http", "--snapshotter", kSnapshotter, Reference(tag)});
    ASSERT_EQ(pull.exit_code, 0) << pull.output << "\ncontainerd log:\n"
                                 << containerd_->ReadLog();
  }

  void BerthPull(const std::string& tag) {
    CommandResult pulled =
        stack_.Berth({"pull", Reference(tag), "--insecure-registry", registry_.host()});
    ASSERT_EQ(pulled.exit_code, 0) << pulled.output << stack_.imaged.ReadLog();
  }

  // The blobs and the snapshot keys of namespace "default" (where berth works and the proxies
  // serve containerd) in the stack's contentd and snapshotd.
  std::set<std::string> BlobsInContentd() const {
    CommandResult ls = Ctr(stack_.contentd.address(), "default", {"content", "ls", "-q"});
    EXPECT_EQ(ls.exit_code, 0) << ls.output;
    std::set<std::string> out;
    for (absl::string_view line : absl::StrSplit(ls.output, '\n', absl::SkipWhitespace())) {
      out.insert(std::string(absl::StripAsciiWhitespace(line)));
    }
    return out;
  }
  std::set<std::string> SnapshotsInSnapshotd() const {
    CommandResult ls =
        Ctr(stack_.snapshotd.address(), "default", {"snapshots", "--snapshotter", "x", "ls"});
    EXPECT_EQ(ls.exit_code, 0) << ls.output;
    std::set<std::string> out;
    for (absl::string_view line : absl::StrSplit(ls.output, '\n', absl::SkipWhitespace())) {
      std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      if (!fields.empty() && fields[0] != "KEY") {
        out.insert(fields[0]);
      }
    }
    return out;
  }

  // The images `ctr images check -q` finds fully downloaded and unpacked: through imaged's
  // socket (berth's records, content and snapshots) or containerd's (its own).
  std::string ReadyInBerth() const {
    return Ctr(stack_.address, "default", {"images", "check", "-q"}).output;
  }
  std::string ReadyInContainerd() const {
    return ContainerdCtr({"images", "check", "-q", "--snapshotter", kSnapshotter}).output;
  }

  TempDir dir_;
  Registry registry_{dir_.path()};
  std::string layout_;
  ImagedStack stack_{dir_.path()};
  const std::string ns_ = absl::StrCat("berth-it-", getpid());
  std::unique_ptr<Containerd> containerd_;
  std::vector<std::string> containers_;
};

TEST_F(ContainerdSnapshotdTest, PullAndRunThroughTheProxySnapshotter) {
  Contentd::Options contentd_options;
  contentd_options.default_namespace = kProxyNamespace;
  Contentd contentd(dir_.path(), contentd_options);
  absl::Status status = contentd.Start();
  ASSERT_TRUE(status.ok()) << status;

  Snapshotd::Options snapshotd_options;
  snapshotd_options.contentd_address = contentd.address();
  snapshotd_options.default_namespace = kProxyNamespace;
  Snapshotd snapshotd(dir_.path(), snapshotd_options);
  status = snapshotd.Start();
  ASSERT_TRUE(status.ok()) << status;

  status = StartContainerd(contentd.address(), snapshotd.address());
  ASSERT_TRUE(status.ok()) << status;

  CommandResult plugins = ContainerdCtr({"plugins", "ls"});
  ASSERT_EQ(plugins.exit_code, 0) << plugins.output;
  EXPECT_THAT(plugins.output, HasSubstr(kSnapshotter));

  ContainerdPull("a");
  const std::string ref = Reference("a");

  // The unpacked layer is a committed snapshot in snapshotd, in its default namespace.
  CommandResult in_snapshotd =
      Ctr(snapshotd.address(), kProxyNamespace, {"snapshots", "--snapshotter", "x", "ls"});
  ASSERT_EQ(in_snapshotd.exit_code, 0) << in_snapshotd.output;
  EXPECT_THAT(in_snapshotd.output, HasSubstr("Committed"));
  EXPECT_THAT(in_snapshotd.output, HasSubstr("sha256:"));
  CommandResult via_containerd = ContainerdCtr({"snapshots", "--snapshotter", kSnapshotter, "ls"});
  ASSERT_EQ(via_containerd.exit_code, 0) << via_containerd.output;
  EXPECT_THAT(via_containerd.output, HasSubstr("Committed"));

  EXPECT_THAT(RunHello(ref, "hello-1"), HasSubstr("hello from berth"));

  // Nothing left: the container and its task are gone, its rootfs snapshot removed, no shim
  // for it runs, nothing is mounted from snapshotd's root.
  CommandResult containers = ContainerdCtr({"containers", "ls", "-q"});
  EXPECT_EQ(containers.output, "") << containers.output;
  CommandResult tasks = ContainerdCtr({"tasks", "ls", "-q"});
  EXPECT_EQ(tasks.output, "") << tasks.output;
  EXPECT_TRUE(testing::WaitFor(
      [&] { return ProcessesWith({"containerd-shim", "-namespace", ns_}).empty(); },
      absl::Seconds(10)))
      << "a shim for namespace " << ns_ << " is still running";
  absl::StatusOr<std::string> mountinfo = ReadFile("/proc/self/mountinfo");
  ASSERT_TRUE(mountinfo.ok());
  EXPECT_THAT(*mountinfo, Not(HasSubstr(dir_.path())));

  CommandResult rmi = ContainerdCtr({"images", "rm", "--sync", ref});
  EXPECT_EQ(rmi.exit_code, 0) << rmi.output;
  // containerd removes a proxy snapshotter's snapshots in its garbage collection (metadata
  // first, the backend after): with the container and the image gone, snapshotd empties.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        in_snapshotd = Ctr(snapshotd.address(), kProxyNamespace,
                           {"snapshots", "--snapshotter", "x", "ls"});
        // Only the header line.
        return in_snapshotd.exit_code == 0 &&
               std::count(in_snapshotd.output.begin(), in_snapshotd.output.end(), '\n') == 1;
      },
      absl::Seconds(30)))
      << "left in snapshotd:\n" << in_snapshotd.output;

  EXPECT_EQ(WEXITSTATUS(containerd_->Stop()), 0) << containerd_->ReadLog();
  EXPECT_EQ(WEXITSTATUS(snapshotd.Stop()), 0) << snapshotd.ReadLog();
  EXPECT_EQ(WEXITSTATUS(contentd.Stop()), 0) << contentd.ReadLog();
}

// What berth pulled, a containerd using contentd and snapshotd as its proxy plugins has. Proxy
// clients send no namespace header, and both daemons serve them in "default", the namespace
// berth pulled in. containerd's Go client pulling with unpack (containerd-go-pull: the path of
// CRI and nerdctl) then downloads no blob (containerd's shared content policy finds each in
// contentd) and applies no layer: containerd's unpacker asks for each layer's snapshot with
// containerd.io/snapshot.ref=<chain id>, snapshotd answers that berth's committed chain has it
// (AlreadyExists, as containerd's remote snapshotters do) and containerd adopts it. `ctr run`
// runs on that chain. (`ctr images pull` of containerd 1.6 unpacks through image.Unpack, which
// never asks: it applies every layer again, into snapshots of its own.)
TEST_F(ContainerdSnapshotdTest, ContainerdAdoptsTheChainImagedPulled) {
  absl::Status status = stack_.Start();
  ASSERT_TRUE(status.ok()) << status;
  BerthPull("a");
  const std::string ref = Reference("a");
  const std::set<std::string> berths = SnapshotsInSnapshotd();
  const int blob_requests = registry_.CountRequests("/blobs/");

  status = StartContainerd(stack_.contentd.address(), stack_.snapshotd.address());
  ASSERT_TRUE(status.ok()) << status;
  int code = -1;
  std::string pull = testing::RunCommand(
      {testing::BinaryPath("integration/containerd-go-pull"), containerd_->address(), ns_, ref,
       kSnapshotter},
      &code);
  ASSERT_EQ(code, 0) << pull << "\ncontainerd log:\n" << containerd_->ReadLog();
  EXPECT_EQ(registry_.CountRequests("/blobs/"), blob_requests) << "containerd downloaded a blob";
  // Not one snapshot more in snapshotd (a layer applied by containerd would be a committed
  // snapshot of containerd's naming, "<ns>/<n>/sha256:..."), and containerd sees berth's chain.
  EXPECT_EQ(SnapshotsInSnapshotd(), berths);
  const std::string top = PartsOf(layout_, "a").chain.back();
  CommandResult via_containerd =
      ContainerdCtr({"snapshots", "--snapshotter", kSnapshotter, "info", top});
  EXPECT_EQ(via_containerd.exit_code, 0) << via_containerd.output;
  EXPECT_THAT(via_containerd.output, HasSubstr("Committed"));

  EXPECT_THAT(RunHello(ref, "adopted-1"), HasSubstr("hello from berth"));

  // The container's rootfs goes with it (containerd removes it from the backend in its
  // collection, after its own record); berth's chain stays as it was.
  std::set<std::string> left;
  EXPECT_TRUE(testing::WaitFor([&] { return (left = SnapshotsInSnapshotd()) == berths; },
                               absl::Seconds(30)))
      << "in snapshotd: " << ::testing::PrintToString(left)
      << "\nexpected: " << ::testing::PrintToString(berths);
}

// containerd -> berth. berth pulls "a"; the containerd pulls "b" ("a" plus a layer) through
// the proxies, applying it into snapshots of its own, then deletes it and collects at once
// (`ctr images rm --sync`): its collection walks contentd and snapshotd and removes what its
// metadata does not name. What berth's "a" holds is refused or never shown to it, so "a" stays
// whole (every blob, the unpacked chain); "b"'s own blobs and containerd's snapshots go.
TEST_F(ContainerdSnapshotdTest, ContainerdsCollectionLeavesBerthsImagesWhole) {
  absl::Status status = stack_.Start();
  ASSERT_TRUE(status.ok()) << status;
  BerthPull("a");
  const ImageParts a = PartsOf(layout_, "a");
  const ImageParts b = PartsOf(layout_, "b");
  ASSERT_THAT(ReadyInBerth(), HasSubstr(Reference("a")));

  status = StartContainerd(stack_.contentd.address(), stack_.snapshotd.address());
  ASSERT_TRUE(status.ok()) << status;
  ContainerdPull("b");
  ASSERT_THAT(ReadyInContainerd(), HasSubstr(Reference("b")));
  EXPECT_THAT(RunHello(Reference("b"), "b-1"), HasSubstr("hello from berth"));
  const std::set<std::string> with_b = SnapshotsInSnapshotd();
  ASSERT_GT(with_b.size(), a.chain.size()) << "containerd made no snapshot of its own";

  CommandResult rmi = ContainerdCtr({"images", "rm", "--sync", Reference("b")});
  ASSERT_EQ(rmi.exit_code, 0) << rmi.output;

  // "a" is whole for berth: its blobs, its chain, complete and unpacked through imaged.
  std::set<std::string> blobs = BlobsInContentd();
  for (const std::string& digest : a.Blobs()) {
    EXPECT_EQ(blobs.count(digest), 1u) << digest << " of \"a\" is gone";
  }
  std::set<std::string> snapshots = SnapshotsInSnapshotd();
  for (const std::string& key : a.chain) {
    EXPECT_EQ(snapshots.count(key), 1u) << "snapshot " << key << " of \"a\" is gone";
  }
  EXPECT_THAT(ReadyInBerth(), HasSubstr(Reference("a"))) << stack_.imaged.ReadLog();
  // What only "b" had went: its manifest, config and own layer, and containerd's snapshots.
  for (const std::string& digest : {b.manifest, b.config, b.layers.back()}) {
    EXPECT_EQ(blobs.count(digest), 0u) << digest << " of \"b\" is left";
  }
  EXPECT_EQ(snapshots, std::set<std::string>(a.chain.begin(), a.chain.end()))
      << "containerd log:\n" << containerd_->ReadLog();
  // containerd logged what it was refused and went on.
  EXPECT_THAT(containerd_->ReadLog(), HasSubstr("in use by berth"));
}

// berth -> containerd. The containerd pulls "b" through the proxies; berth pulls "a" (sharing
// "b"'s base layers), deletes it (imaged collects snapshotd's side before returning) and runs
// both of its full collections. What containerd wrote or asked for stays: "b" is complete and
// unpacked for containerd, and runs; what only berth's "a" had goes (its manifest and config,
// its snapshot chain).
TEST_F(ContainerdSnapshotdTest, BerthsCollectionsLeaveContainerdsImagesWhole) {
  absl::Status status = stack_.Start();
  ASSERT_TRUE(status.ok()) << status;
  status = StartContainerd(stack_.contentd.address(), stack_.snapshotd.address());
  ASSERT_TRUE(status.ok()) << status;
  ContainerdPull("b");
  const std::set<std::string> containerds = SnapshotsInSnapshotd();
  BerthPull("a");
  const ImageParts a = PartsOf(layout_, "a");
  const ImageParts b = PartsOf(layout_, "b");

  CommandResult rm = stack_.Berth({"images", "rm", Reference("a")});
  ASSERT_EQ(rm.exit_code, 0) << rm.output << stack_.imaged.ReadLog();
  CommandResult gc = stack_.Berth({"snapshot", "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.output;
  gc = stack_.Berth({"content", "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.output;

  std::set<std::string> blobs = BlobsInContentd();
  for (const std::string& digest : b.Blobs()) {
    EXPECT_EQ(blobs.count(digest), 1u) << digest << " of containerd's \"b\" is gone";
  }
  EXPECT_EQ(SnapshotsInSnapshotd(), containerds);
  EXPECT_THAT(ReadyInContainerd(), HasSubstr(Reference("b")));
  EXPECT_THAT(RunHello(Reference("b"), "b-1"), HasSubstr("hello from berth"));
  // berth's own went.
  EXPECT_EQ(blobs.count(a.manifest), 0u);
  EXPECT_EQ(blobs.count(a.config), 0u);
  std::set<std::string> snapshots = SnapshotsInSnapshotd();
  for (const std::string& key : a.chain) {
    EXPECT_EQ(snapshots.count(key), 0u) << "berth's snapshot " << key << " is left";
  }
}

// What a snapshotter does with a snapshot that is mounted: containerd's snapshotters neither
// know nor check (the mount is the caller's), so committing a mounted active snapshot works
// (the mount stays and keeps working, now over the committed directory) and removing a mounted
// one works too. The same sequence runs against containerd's own overlayfs snapshotter,
// against snapshotd as containerd's proxy snapshotter, and against snapshotd directly; the
// outcomes must be the same, and what they are is checked too.
struct MountedOutcome {
  int commit_exit = -1;
  bool written_after_commit = false;  // a write through the mount after Commit succeeded
  bool committed_sees_file = false;   // a view of the committed snapshot sees the first write
  int remove_exit = -1;
  bool listed_after_remove = true;
  bool operator==(const MountedOutcome& o) const {
    return commit_exit == o.commit_exit && written_after_commit == o.written_after_commit &&
           committed_sees_file == o.committed_sees_file && remove_exit == o.remove_exit &&
           listed_after_remove == o.listed_after_remove;
  }
};

std::ostream& operator<<(std::ostream& os, const MountedOutcome& o) {
  return os << "{commit " << o.commit_exit << ", written after commit " << o.written_after_commit
            << ", committed sees file " << o.committed_sees_file << ", rm " << o.remove_exit
            << ", listed after rm " << o.listed_after_remove << "}";
}

MountedOutcome CommitAndRemoveMounted(const std::string& address, const std::string& ns,
                                      const std::string& snapshotter, const std::string& dir) {
  auto snapshots = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", snapshotter});
    return Ctr(address, ns, args);
  };
  auto mount_at = [&](const std::string& key, const std::string& target) {
    mkdir(target.c_str(), 0755);
    CommandResult m = snapshots({"mounts", target, key});
    EXPECT_EQ(m.exit_code, 0) << m.output;
    int code = -1;
    std::string out = testing::RunCommand(std::string(absl::StripAsciiWhitespace(m.output)), &code);
    EXPECT_EQ(code, 0) << out << "\nmount command: " << m.output;
  };
  auto shell = [](const std::string& command) {
    int code = -1;
    testing::RunCommand(command, &code);
    return code == 0;
  };
  MountedOutcome o;
  EXPECT_EQ(snapshots({"prepare", "mounted-a"}).exit_code, 0);
  const std::string a = dir + "/a";
  mount_at("mounted-a", a);
  EXPECT_TRUE(shell(absl::StrCat("echo first > ", a, "/file")));
  o.commit_exit = snapshots({"commit", "mounted-c", "mounted-a"}).exit_code;
  o.written_after_commit = shell(absl::StrCat("echo second > ", a, "/after"));
  EXPECT_TRUE(shell(absl::StrCat("umount ", a)));
  if (o.commit_exit == 0) {
    EXPECT_EQ(snapshots({"view", "mounted-v", "mounted-c"}).exit_code, 0);
    const std::string v = dir + "/v";
    mount_at("mounted-v", v);
    o.committed_sees_file = shell(absl::StrCat("grep -q first ", v, "/file"));
    EXPECT_TRUE(shell(absl::StrCat("umount ", v)));
    snapshots({"rm", "mounted-v"});
  }

  EXPECT_EQ(snapshots({"prepare", "mounted-b"}).exit_code, 0);
  const std::string b = dir + "/b";
  mount_at("mounted-b", b);
  o.remove_exit = snapshots({"rm", "mounted-b"}).exit_code;
  CommandResult ls = snapshots({"ls"});
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  o.listed_after_remove = absl::StrContains(ls.output, "mounted-b");
  EXPECT_TRUE(shell(absl::StrCat("umount ", b)));
  if (o.listed_after_remove) {
    snapshots({"rm", "mounted-b"});
  }
  snapshots({"rm", "mounted-c"});
  return o;
}

TEST_F(ContainerdSnapshotdTest, MountedSnapshotCommitAndRemoveMatchContainerd) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "mounting needs root";
  }
  TempDir& dir = dir_;
  Snapshotd snapshotd(dir.path(), Snapshotd::Options{});
  absl::Status status = snapshotd.Start();
  ASSERT_TRUE(status.ok()) << status;
  status = StartContainerd("", snapshotd.address());
  ASSERT_TRUE(status.ok()) << status;
  Containerd& containerd = *containerd_;

  ASSERT_EQ(mkdir(dir.Join("containerd").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Join("proxy").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Join("direct").c_str(), 0755), 0);
  MountedOutcome reference =
      CommitAndRemoveMounted(containerd.address(), "mounted", "overlayfs", dir.Join("containerd"));
  MountedOutcome proxied =
      CommitAndRemoveMounted(containerd.address(), "mounted", kSnapshotter, dir.Join("proxy"));
  MountedOutcome direct =
      CommitAndRemoveMounted(snapshotd.address(), "mounted", "berth", dir.Join("direct"));

  // containerd's own behaviour, as observed: no check, both calls succeed.
  MountedOutcome expected;
  expected.commit_exit = 0;
  expected.written_after_commit = true;
  expected.committed_sees_file = true;
  expected.remove_exit = 0;
  expected.listed_after_remove = false;
  EXPECT_EQ(reference, expected) << "containerd's overlayfs snapshotter";
  EXPECT_EQ(proxied, reference) << "snapshotd through containerd's proxy";
  EXPECT_EQ(direct, reference) << "snapshotd on its own socket";

  EXPECT_EQ(WEXITSTATUS(containerd.Stop()), 0) << containerd.ReadLog();
  EXPECT_EQ(WEXITSTATUS(snapshotd.Stop()), 0) << snapshotd.ReadLog();
}

}  // namespace
}  // namespace berth::integration
