// A real containerd uses snapshotd as a `proxy_plugins` snapshotter (type "snapshot") and
// contentd as its content store (type "content"): `ctr images pull --snapshotter <name>` unpacks
// the image into snapshotd, and `ctr run --snapshotter <name>` (runc) runs it on snapshotd's
// mounts; the container prints what the image's program prints. Proxy clients send no
// namespace header: snapshotd and contentd serve them in their default namespace.
//
// Afterwards nothing is left: no container, no task, no shim, no mount, and once the image is
// removed too, no snapshot in snapshotd.

#include <dirent.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "integration/harness.h"
#include "integration/snapshotd_harness.h"
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

TEST(ContainerdSnapshotdTest, PullAndRunThroughTheProxySnapshotter) {
  TempDir dir;
  // A namespace of our own keeps runc's state (/run/containerd/runc/<ns>) and the shims apart
  // from any other containerd on this host.
  const std::string ns = absl::StrCat("berth-it-", getpid());
  const std::string id = "hello-1";

  const std::string layout = dir.Join("image");
  absl::Status status = MakeTestImage(layout, kTag);
  ASSERT_TRUE(status.ok()) << status;
  Registry registry(dir.path());
  status = registry.Start();
  ASSERT_TRUE(status.ok()) << status;
  status = registry.Push(layout, kTag, kImageName);
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

}  // namespace
}  // namespace berth::integration
