#include "services/execd/test_bundle.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"
#include "lib/images/oci.h"
#include "lib/oci/spec.h"
#include "lib/testing/testing.h"

namespace berth::execd::testing {

absl::Status MakeBusyboxRootfs(const std::string& rootfs) {
  struct stat st;
  if (::stat(kBusybox, &st) != 0) {
    return absl::FailedPreconditionError(
        "no /bin/busybox: install busybox-static (scripts/install-deps.sh)");
  }
  BERTH_RETURN_IF_ERROR(MakeDirs(rootfs + "/bin", 0755));
  BERTH_RETURN_IF_ERROR(MakeDirs(rootfs + "/etc", 0755));
  BERTH_RETURN_IF_ERROR(MakeDirs(rootfs + "/tmp", 01777));
  BERTH_ASSIGN_OR_RETURN(std::string binary, ReadFile(kBusybox));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(rootfs + "/bin/busybox", binary, 0755));
  for (const char* applet : {"sh", "echo", "cat", "sleep", "true", "false", "tty", "stty", "head",
                             "dd", "ps", "test", "kill", "yes", "tail"}) {
    std::string link = absl::StrCat(rootfs, "/bin/", applet);
    if (::symlink("busybox", link.c_str()) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("symlink ", link));
    }
  }
  return WriteFileAtomic(rootfs + "/etc/passwd", "root:x:0:0::/:/bin/sh\n", 0644);
}

absl::StatusOr<nlohmann::json> BusyboxSpec(const std::string& id, const std::string& rootfs,
                                           const std::vector<std::string>& args, bool terminal,
                                           int64_t memory_limit_bytes) {
  images::ImageConfig image;
  image.env = {"PATH=/bin"};
  oci::SpecOptions o;
  o.id = id;
  o.cgroups_path = absl::StrCat("/", id);
  o.rootfs_path = rootfs;
  o.args = args;
  o.terminal = terminal;
  o.memory_limit_bytes = memory_limit_bytes;
  return oci::GenerateSpec(image, o);
}

void ForceCleanup(const std::string& runtime_root, const std::string& id,
                  const std::string& shim_state_dir) {
  if (ShimAlive(shim_state_dir)) {
    absl::StatusOr<std::string> text = ReadFile(shim_state_dir + "/shim.pid");
    int pid = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) && pid > 1) {
      ::kill(pid, SIGKILL);
    }
  }
  berth::testing::RunCommand(
      std::vector<std::string>{"runc", "--root", runtime_root, "delete", "-f", id});
}

FifoReader::FifoReader(std::string path) : path_(std::move(path)) {
  ::mkfifo(path_.c_str(), 0600);
  thread_ = std::thread([this] {
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) {
      data_.append(buf, n);
    }
  });
}

FifoReader::~FifoReader() {
  if (thread_.joinable()) {
    UniqueFd unblock(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
    unblock.Reset();
    thread_.join();
  }
}

std::string FifoReader::Finish() {
  thread_.join();
  return data_;
}

bool ShimAlive(const std::string& state_dir) {
  absl::StatusOr<std::string> text = ReadFile(state_dir + "/shim.pid");
  int pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 1) {
    return false;
  }
  absl::StatusOr<std::string> comm = ReadFile(absl::StrCat("/proc/", pid, "/comm"));
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  // A zombie is dead (its parent has not reaped it yet).
  return comm.ok() && absl::StripAsciiWhitespace(*comm) == "berth-shim" && stat.ok() &&
         stat->find(") Z ") == std::string::npos;
}

}  // namespace berth::execd::testing
