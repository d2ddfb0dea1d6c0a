// A real containerd uses snapshotd as a `proxy_plugins` snapshotter (type "snapshot") and
// contentd as its content store (type "content"): `ctr images pull --snapshotter <name>` unpacks
// the image into snapshotd, and `ctr run --snapshotter <name>` (runc) runs it on snapshotd's
// mounts; the container prints what the image's program prints. Proxy clients send no
// namespace header: snapshotd and contentd serve them in their default namespace.
//
// Afterwards nothing is left: no container, no task, no shim, no mount, and once the image is
// removed too, no snapshot in snapshotd.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
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

constexpr char kImageName[] = "test/hello";
constexpr char kTag[] = "latest";
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

// Makes the test image at `layout`, starts `registry` and pushes the image there as
// kImageName:kTag.
absl::Status ServeTestImage(const std::string& layout, Registry& registry) {
  BERTH_RETURN_IF_ERROR(MakeTestImage(layout, kTag));
  BERTH_RETURN_IF_ERROR(registry.Start());
  return registry.Push(layout, kTag, kImageName);
}

TEST(ContainerdSnapshotdTest, PullAndRunThroughTheProxySnapshotter) {
  TempDir dir;
  // A namespace of our own keeps runc's state (/run/containerd/runc/<ns>) and the shims apart
  // from any other containerd on this host.
  const std::string ns = absl::StrCat("berth-it-", getpid());
  const std::string id = "hello-1";

  const std::string layout = dir.Join("image");
  Registry registry(dir.path());
  absl::Status status = ServeTestImage(layout, registry);
  ASSERT_TRUE(status.ok()) << status;
  const std::string ref = absl::StrCat(registry.host(), "/", kImageName, ":", kTag);

  Contentd::Options contentd_options;
  contentd_options.default_namespace = kProxyNamespace;
  Contentd contentd(dir.path(), contentd_options);
  status = contentd.Start();
  ASSERT_TRUE(status.ok()) << status;

  Snapshotd::Options snapshotd_options;
  snapshotd_options.contentd_address = contentd.address();
  snapshotd_options.default_namespace = kProxyNamespace;
  Snapshotd snapshotd(dir.path(), snapshotd_options);
  status = snapshotd.Start();
  ASSERT_TRUE(status.ok()) << status;

  Containerd::Options options;
  options.content_proxy_address = contentd.address();
  options.snapshot_proxy_address = snapshotd.address();
  options.snapshot_proxy_name = kSnapshotter;
  Containerd containerd(dir.path(), options);
  status = containerd.Start();
  ASSERT_TRUE(status.ok()) << status;

  CommandResult plugins = Ctr(containerd.address(), ns, {"plugins", "ls"});
  ASSERT_EQ(plugins.exit_code, 0) << plugins.output;
  EXPECT_THAT(plugins.output, HasSubstr(kSnapshotter));

  CommandResult pull = Ctr(containerd.address(), ns,
                           {"images", "pull", "--plain-http", "--snapshotter", kSnapshotter, ref});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << "\ncontainerd log:\n"
                               << containerd.ReadLog() << "\nsnapshotd log:\n"
                               << snapshotd.ReadLog();

  // The unpacked layer is a committed snapshot in snapshotd, in its default namespace.
  CommandResult in_snapshotd =
      Ctr(snapshotd.address(), kProxyNamespace, {"snapshots", "--snapshotter", "x", "ls"});
  ASSERT_EQ(in_snapshotd.exit_code, 0) << in_snapshotd.output;
  EXPECT_THAT(in_snapshotd.output, HasSubstr("Committed"));
  EXPECT_THAT(in_snapshotd.output, HasSubstr("sha256:"));
  CommandResult via_containerd =
      Ctr(containerd.address(), ns, {"snapshots", "--snapshotter", kSnapshotter, "ls"});
  ASSERT_EQ(via_containerd.exit_code, 0) << via_containerd.output;
  EXPECT_THAT(via_containerd.output, HasSubstr("Committed"));

  // Whatever a failure below leaves behind goes before containerd stops (no-ops otherwise).
  absl::Cleanup leftovers = [&] {
    if (containerd.running()) {
      Ctr(containerd.address(), ns, {"tasks", "kill", "-s", "SIGKILL", id});
      Ctr(containerd.address(), ns, {"tasks", "rm", "-f", id});
      Ctr(containerd.address(), ns, {"containers", "rm", id});
    }
  };
  const std::string fifo_dir = dir.Join("fifo");
  CommandResult run = Ctr(containerd.address(), ns,
                          {"run", "--rm", "--snapshotter", kSnapshotter, "--fifo-dir", fifo_dir,
                           ref, id, "/hello"});
  EXPECT_EQ(run.exit_code, 0) << run.output << "\ncontainerd log:\n" << containerd.ReadLog();
  EXPECT_THAT(run.output, HasSubstr("hello from berth"));

  // Nothing left: the container and its task are gone, its rootfs snapshot removed, no shim
  // for it runs, nothing is mounted from snapshotd's root.
  CommandResult containers = Ctr(containerd.address(), ns, {"containers", "ls", "-q"});
  EXPECT_EQ(containers.output, "") << containers.output;
  CommandResult tasks = Ctr(containerd.address(), ns, {"tasks", "ls", "-q"});
  EXPECT_EQ(tasks.output, "") << tasks.output;
  EXPECT_TRUE(testing::WaitFor(
      [&] { return ProcessesWith({"containerd-shim", "-namespace", ns}).empty(); },
      absl::Seconds(10)))
      << "a shim for namespace " << ns << " is still running";
  absl::StatusOr<std::string> mountinfo = ReadFile("/proc/self/mountinfo");
  ASSERT_TRUE(mountinfo.ok());
  EXPECT_THAT(*mountinfo, Not(HasSubstr(dir.path())));

  CommandResult rmi = Ctr(containerd.address(), ns, {"images", "rm", "--sync", ref});
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

  EXPECT_EQ(WEXITSTATUS(containerd.Stop()), 0) << containerd.ReadLog();
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
TEST(ContainerdSnapshotdTest, ContainerdAdoptsTheChainImagedPulled) {
  TempDir dir;
  const std::string ns = absl::StrCat("berth-it-", getpid());
  const std::string id = "adopted-1";

  const std::string layout = dir.Join("image");
  Registry registry(dir.path());
  absl::Status status = ServeTestImage(layout, registry);
  ASSERT_TRUE(status.ok()) << status;
  const std::string ref = absl::StrCat(registry.host(), "/", kImageName, ":", kTag);

  ImagedStack stack(dir.path());
  status = stack.Start();
  ASSERT_TRUE(status.ok()) << status;
  CommandResult pulled = stack.Berth({"pull", ref, "--insecure-registry", registry.host()});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.output << stack.imaged.ReadLog();
  auto in_snapshotd = [&] {
    CommandResult ls =
        Ctr(stack.snapshotd.address(), "default", {"snapshots", "--snapshotter", "x", "ls"});
    EXPECT_EQ(ls.exit_code, 0) << ls.output;
    return ls.output;
  };
  const std::string berths = in_snapshotd();
  const int blob_requests = registry.CountRequests("/blobs/");

  Containerd::Options options;
  options.content_proxy_address = stack.contentd.address();
  options.snapshot_proxy_address = stack.snapshotd.address();
  options.snapshot_proxy_name = kSnapshotter;
  Containerd containerd(dir.path(), options);
  status = containerd.Start();
  ASSERT_TRUE(status.ok()) << status;

  int code = -1;
  std::string pull = testing::RunCommand(
      {testing::BinaryPath("integration/containerd-go-pull"), containerd.address(), ns, ref,
       kSnapshotter},
      &code);
  ASSERT_EQ(code, 0) << pull << "\ncontainerd log:\n" << containerd.ReadLog();
  EXPECT_EQ(registry.CountRequests("/blobs/"), blob_requests) << "containerd downloaded a blob";
  // Not one snapshot more in snapshotd (a layer applied by containerd would be a committed
  // snapshot of containerd's naming, "<ns>/<n>/sha256:..."), and containerd sees berth's chain.
  EXPECT_EQ(in_snapshotd(), berths);
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout + "/index.json"));
  nlohmann::json manifest =
      nlohmann::json::parse(LayoutBlob(layout, index["manifests"][0]["digest"]));
  const std::string top =
      TopChainId(nlohmann::json::parse(LayoutBlob(layout, manifest["config"]["digest"])));
  ASSERT_FALSE(top.empty());
  CommandResult via_containerd =
      Ctr(containerd.address(), ns, {"snapshots", "--snapshotter", kSnapshotter, "info", top});
  EXPECT_EQ(via_containerd.exit_code, 0) << via_containerd.output;
  EXPECT_THAT(via_containerd.output, HasSubstr("Committed"));

  absl::Cleanup leftovers = [&] {
    if (containerd.running()) {
      Ctr(containerd.address(), ns, {"tasks", "kill", "-s", "SIGKILL", id});
      Ctr(containerd.address(), ns, {"tasks", "rm", "-f", id});
      Ctr(containerd.address(), ns, {"containers", "rm", id});
    }
  };
  CommandResult run = Ctr(containerd.address(), ns,
                          {"run", "--rm", "--snapshotter", kSnapshotter, "--fifo-dir",
                           dir.Join("fifo"), ref, id, "/hello"});
  EXPECT_EQ(run.exit_code, 0) << run.output << "\ncontainerd log:\n" << containerd.ReadLog();
  EXPECT_THAT(run.output, HasSubstr("hello from berth"));

  // The container's rootfs goes with it (containerd removes it from the backend in its
  // collection, after its own record); berth's chain stays as it was.
  std::string left;
  EXPECT_TRUE(testing::WaitFor([&] { return (left = in_snapshotd()) == berths; },
                               absl::Seconds(30)))
      << "in snapshotd:\n" << left << "expected:\n" << berths;

  EXPECT_EQ(WEXITSTATUS(containerd.Stop()), 0) << containerd.ReadLog();
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

TEST(ContainerdSnapshotdTest, MountedSnapshotCommitAndRemoveMatchContainerd) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "mounting needs root";
  }
  TempDir dir;
  Snapshotd snapshotd(dir.path(), Snapshotd::Options{});
  absl::Status status = snapshotd.Start();
  ASSERT_TRUE(status.ok()) << status;
  Containerd::Options options;
  options.snapshot_proxy_address = snapshotd.address();
  options.snapshot_proxy_name = kSnapshotter;
  Containerd containerd(dir.path(), options);
  status = containerd.Start();
  ASSERT_TRUE(status.ok()) << status;

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
