// Runs runc with specs from GenerateSpec: the spec is only right if a real runtime accepts it
// and the process sees what it asked for. Needs root, runc and `cc -static`; skips otherwise.

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/oci/spec.h"
#include "lib/testing/testing.h"

namespace berth::oci {
namespace {

using ::testing::HasSubstr;

// A static test program: prints the greeting, or exits with a code, or prints a file, or its ids.
constexpr char kProgram[] = R"C(
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char** argv) {
  if (argc > 2 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
  if (argc > 2 && strcmp(argv[1], "cat") == 0) {
    FILE* f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 2; }
    char buf[256];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "id") == 0) {
    printf("uid=%d gid=%d\n", (int)getuid(), (int)getgid());
    return 0;
  }
  printf("hello from berth\n");
  return 0;
}
)C";

class RuncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "runc needs root to create a container (ctest label: root)";
    }
    int code = 0;
    testing::RunCommand(std::vector<std::string>{"runc", "--version"}, &code);
    // scripts/install-deps.sh installs runc and a static libc: without them this is a broken
    // test machine, not a case to skip.
    ASSERT_EQ(code, 0) << "runc --version failed: is runc installed (scripts/install-deps.sh)?";
    rootfs_ = dir_.Join("bundle/rootfs");
    ASSERT_TRUE(MakeDirs(rootfs_ + "/etc", 0755).ok());
    ASSERT_TRUE(WriteFileAtomic(dir_.Join("hello.c"), kProgram, 0644).ok());
    std::string out = testing::RunCommand(
        {"cc", "-static", "-Os", "-o", rootfs_ + "/hello", dir_.Join("hello.c")}, &code);
    ASSERT_EQ(code, 0) << "cannot link a static program (build-essential): " << out;
    ASSERT_TRUE(WriteFileAtomic(rootfs_ + "/etc/passwd",
                                "root:x:0:0::/:/hello\napp:x:1000:1001::/:/hello\n", 0644)
                    .ok());
    ASSERT_TRUE(WriteFileAtomic(rootfs_ + "/etc/group", "root:x:0:\napp:x:1001:\n", 0644).ok());
  }

  void TearDown() override {
    for (const std::string& id : started_) {
      testing::RunCommand(std::vector<std::string>{"runc", "--root", dir_.Join("state"), "delete", "-f", id});
    }
  }

  SpecOptions Options() {
    SpecOptions o;
    o.id = absl::StrCat("berth-oci-", RandomHex(6));
    // One level below the root, so runc's delete leaves no parent cgroup behind.
    o.cgroups_path = absl::StrCat("/", o.id);
    o.rootfs_path = rootfs_;
    return o;
  }

  // Writes config.json from GenerateSpec and runs the container in the foreground; returns its
  // output and stores runc's exit code (the container's) in *code.
  std::string Run(const std::vector<std::string>& args, SpecOptions opts, int* code) {
    images::ImageConfig image;
    image.entrypoint = {"/hello"};
    opts.args = args;
    auto spec = GenerateSpec(image, opts);
    EXPECT_TRUE(spec.ok()) << spec.status();
    if (!spec.ok()) {
      *code = -1;
      return "";
    }
    EXPECT_TRUE(WriteFileAtomic(dir_.Join("bundle/config.json"), spec->dump(2), 0644).ok());
    started_.push_back(opts.id);
    return testing::RunCommand({"runc", "--root", dir_.Join("state"), "run", "--bundle",
                                dir_.Join("bundle"), opts.id},
                               code);
  }

  testing::TempDir dir_;
  std::string rootfs_;
  std::vector<std::string> started_;
};

TEST_F(RuncTest, RunsTheImageCommand) {
  int code = -1;
  std::string out = Run({}, Options(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("hello from berth"));
}

TEST_F(RuncTest, ExitCodePropagates) {
  int code = -1;
  std::string out = Run({"exit", "3"}, Options(), &code);
  EXPECT_EQ(code, 3) << out;
}

TEST_F(RuncTest, UserNameResolvedFromTheImage) {
  SpecOptions o = Options();
  o.user = "app";
  int code = -1;
  std::string out = Run({"id"}, o, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("uid=1000 gid=1001"));
}

TEST_F(RuncTest, MemoryLimitIsInTheContainersCgroup) {
  std::string file;
  std::string want = std::to_string(64 << 20);
  struct stat st;
  if (::stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st) == 0) {
    file = "/sys/fs/cgroup/memory/memory.limit_in_bytes";  // v1 (or hybrid)
  } else if (::stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0) {
    file = "/sys/fs/cgroup/memory.max";  // v2
  } else {
    FAIL() << "no memory cgroup controller (v1 /sys/fs/cgroup/memory or v2 cgroup.controllers): "
              "memory limits cannot be shown on this host";
  }
  SpecOptions o = Options();
  o.memory_limit_bytes = 64 << 20;
  int code = -1;
  std::string out = Run({"cat", file}, o, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(absl::StripAsciiWhitespace(out), want);
}

}  // namespace
}  // namespace berth::oci
