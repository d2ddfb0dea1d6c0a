#include "lib/oci/spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth::oci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Strings = std::vector<std::string>;

SpecOptions Opts() {
  SpecOptions o;
  o.id = "c1";
  return o;
}

images::ImageConfig Image(Strings entrypoint, Strings cmd) {
  images::ImageConfig c;
  c.entrypoint = std::move(entrypoint);
  c.cmd = std::move(cmd);
  return c;
}

nlohmann::json Gen(const images::ImageConfig& image, const SpecOptions& opts) {
  auto spec = GenerateSpec(image, opts);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : nlohmann::json{};
}

Strings Args(const images::ImageConfig& image, const SpecOptions& opts) {
  return Gen(image, opts)["process"]["args"].get<Strings>();
}

void ExpectInvalid(const images::ImageConfig& image, const SpecOptions& opts,
                   const std::string& names) {
  auto spec = GenerateSpec(image, opts);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(names));
}

TEST(ProcessArgs, EntrypointThenCmd) {
  EXPECT_THAT(Args(Image({"/ep", "-x"}, {"a", "b"}), Opts()), ElementsAre("/ep", "-x", "a", "b"));
}

TEST(Terminal, ConsoleStartsAtTheCallersSize) {
  SpecOptions o = Opts();
  o.terminal = true;
  EXPECT_FALSE(Gen(Image({}, {"sh"}), o)["process"].contains("consoleSize"));
  o.console_height = 30;
  o.console_width = 100;
  nlohmann::json process = Gen(Image({}, {"sh"}), o)["process"];
  EXPECT_EQ(process["consoleSize"]["height"], 30);
  EXPECT_EQ(process["consoleSize"]["width"], 100);
  o.terminal = false;
  EXPECT_FALSE(Gen(Image({}, {"sh"}), o)["process"].contains("consoleSize"));
}

TEST(ProcessArgs, UserArgsReplaceCmdOnly) {
  SpecOptions o = Opts();
  o.args = {"c"};
  EXPECT_THAT(Args(Image({"/ep"}, {"a", "b"}), o), ElementsAre("/ep", "c"));
  EXPECT_THAT(Args(Image({}, {"/bin/sh"}), o), ElementsAre("c"));
}

TEST(ProcessArgs, EntrypointOverrideDropsImageCmd) {
  SpecOptions o = Opts();
  o.entrypoint = Strings{"/other"};
  EXPECT_THAT(Args(Image({"/ep"}, {"a"}), o), ElementsAre("/other"));
  o.args = {"z"};
  EXPECT_THAT(Args(Image({"/ep"}, {"a"}), o), ElementsAre("/other", "z"));
  // An empty --entrypoint clears the image's; the args are then the command.
  o.entrypoint = Strings{};
  EXPECT_THAT(Args(Image({"/ep"}, {"a"}), o), ElementsAre("z"));
}

TEST(ProcessArgs, NoCommandIsInvalid) {
  ExpectInvalid(Image({}, {}), Opts(), "no command");
  SpecOptions o = Opts();
  o.entrypoint = Strings{};
  ExpectInvalid(Image({"/ep"}, {"a"}), o, "no command");
}

TEST(Env, ImageThenUserWithDefaultPath) {
  images::ImageConfig image = Image({"/x"}, {});
  image.env = {"A=1", "B=2"};
  SpecOptions o = Opts();
  o.env = {"B=3", "C=4", "A"};
  auto env = Gen(image, o)["process"]["env"].get<Strings>();
  EXPECT_THAT(env, ElementsAre(HasSubstr("PATH=/usr/local/sbin:"), "B=3", "C=4"));

  image.env = {"PATH=/bin"};
  EXPECT_THAT(Gen(image, Opts())["process"]["env"].get<Strings>(), ElementsAre("PATH=/bin"));

  o = Opts();
  o.terminal = true;
  auto spec = Gen(image, o);
  EXPECT_TRUE(spec["process"]["terminal"].get<bool>());
  EXPECT_THAT(spec["process"]["env"].get<Strings>(), ElementsAre("PATH=/bin", "TERM=xterm"));
}

TEST(WorkingDir, ImageOrOptionOrRoot) {
  images::ImageConfig image = Image({"/x"}, {});
  EXPECT_EQ(Gen(image, Opts())["process"]["cwd"], "/");
  image.working_dir = "/app";
  EXPECT_EQ(Gen(image, Opts())["process"]["cwd"], "/app");
  SpecOptions o = Opts();
  o.working_dir = "/srv";
  EXPECT_EQ(Gen(image, o)["process"]["cwd"], "/srv");
  o.working_dir = "srv";
  ExpectInvalid(image, o, "working dir \"srv\"");
}

class UserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MakeDirs(root_ + "/etc", 0755).ok());
    Write(root_ + "/etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\n"
          "# a comment\n"
          "app:x:1000:1001::/home/app:/bin/sh\n"
          "broken line\n"
          "www:x:33:33::/var/www:/bin/false\n");
    Write(root_ + "/etc/group",
          "root:x:0:\n"
          "appgrp:x:1001:\n"
          "video:x:44:app,www\n"
          "audio:x:29:app\n"
          "staff:x:50:\n");
  }
  static void Write(const std::string& path, const std::string& data) {
    ASSERT_TRUE(WriteFileAtomic(path, data, 0644).ok());
  }
  absl::StatusOr<ResolvedUser> Resolve(const std::string& user) {
    return ResolveUser(root_, user);
  }

  testing::TempDir dir_;
  std::string root_ = dir_.Join("rootfs");
};

TEST_F(UserTest, NumericAndNamed) {
  struct Case {
    const char* user;
    uint32_t uid;
    uint32_t gid;
    std::vector<uint32_t> additional;
  };
  for (const Case& c : {
           Case{"", 0, 0, {}},
           Case{"app", 1000, 1001, {44, 29}},  // supplementary groups from membership
           Case{"1000", 1000, 1001, {44, 29}},  // a known uid takes its passwd gid
           Case{"4321", 4321, 0, {}},           // an unknown uid is fine, with gid 0
           Case{"app:staff", 1000, 50, {}},     // an explicit group: no supplementary ones
           Case{"33:7", 33, 7, {}},
           Case{"www:video", 33, 44, {}},
       }) {
    auto u = Resolve(c.user);
    ASSERT_TRUE(u.ok()) << c.user << ": " << u.status();
    EXPECT_EQ(u->uid, c.uid) << c.user;
    EXPECT_EQ(u->gid, c.gid) << c.user;
    EXPECT_EQ(u->additional_gids, c.additional) << c.user;
  }
}

TEST_F(UserTest, BadUsersAreInvalidArgument) {
  for (const char* bad : {"nobody", "app:nogroup", "a:b:c", ":1", "1:", "99999999999",
                          "1:4294967296"}) {
    auto u = Resolve(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << bad << u.status();
    EXPECT_THAT(std::string(u.status().message()), HasSubstr(bad));
  }
}

TEST_F(UserTest, SpecTakesOptionUserOverImageUserAndAddsGids) {
  images::ImageConfig image = Image({"/x"}, {});
  image.user = "www";
  SpecOptions o = Opts();
  o.rootfs_path = root_;
  auto spec = Gen(image, o);
  EXPECT_EQ(spec["process"]["user"]["uid"], 33);
  EXPECT_EQ(spec["process"]["user"]["additionalGids"].get<std::vector<uint32_t>>(),
            std::vector<uint32_t>{44});
  o.user = "app:appgrp";
  o.additional_gids = {7};
  spec = Gen(image, o);
  EXPECT_EQ(spec["process"]["user"]["uid"], 1000);
  EXPECT_EQ(spec["process"]["user"]["gid"], 1001);
  EXPECT_EQ(spec["process"]["user"]["additionalGids"].get<std::vector<uint32_t>>(),
            std::vector<uint32_t>{7});
  o.user = "ghost";
  ExpectInvalid(image, o, "ghost");
}

// An image whose /etc/passwd is a symlink out of its root (absolute, or climbing with ..) must
// not make berth read the host's file: the link resolves inside the root, where it points at
// nothing, so the name is unknown.
TEST_F(UserTest, SymlinkedPasswdDoesNotLeaveTheRoot) {
  std::string outside = dir_.Join("host-passwd");
  Write(outside, "evil:x:4242:4242::/:/bin/sh\n");
  ASSERT_EQ(::unlink((root_ + "/etc/passwd").c_str()), 0);
  for (const std::string& target : {outside, std::string("../../host-passwd")}) {
    ::unlink((root_ + "/etc/passwd").c_str());
    ASSERT_EQ(::symlink(target.c_str(), (root_ + "/etc/passwd").c_str()), 0);
    auto u = Resolve("evil");
    ASSERT_FALSE(u.ok()) << target << ": read the file outside the root";
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << u.status();
    EXPECT_FALSE(ResolveUser(root_, "evil", RootResolver::kWalk).ok()) << target << " (walk)";
  }
  // A symlink that stays inside the root is followed there, even an absolute one.
  ASSERT_TRUE(MakeDirs(root_ + "/lib/users", 0755).ok());
  Write(root_ + "/lib/users/passwd", "inside:x:77:78::/:/bin/sh\n");
  ::unlink((root_ + "/etc/passwd").c_str());
  ASSERT_EQ(::symlink("/lib/users/passwd", (root_ + "/etc/passwd").c_str()), 0);
  auto u = Resolve("inside");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->uid, 77u);
  // The walk refuses symlinks altogether rather than resolve them.
  EXPECT_FALSE(ResolveUser(root_, "inside", RootResolver::kWalk).ok());
  // A symlinked /etc directory pointing out is resolved inside the root too.
  ASSERT_TRUE(MakeDirs(dir_.Join("hostetc"), 0755).ok());
  Write(dir_.Join("hostetc/passwd"), "evil:x:4242:4242::/:/bin/sh\n");
  ASSERT_TRUE(testing::RemoveTree(root_ + "/etc"));
  ASSERT_EQ(::symlink(dir_.Join("hostetc").c_str(), (root_ + "/etc").c_str()), 0);
  EXPECT_FALSE(Resolve("evil").ok());
  EXPECT_FALSE(ResolveUser(root_, "evil", RootResolver::kWalk).ok());
}

TEST_F(UserTest, HugePasswdIsRefused) {
  Write(root_ + "/etc/passwd", std::string((16u << 20) + 1, '#'));
  auto u = Resolve("app");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << u.status();
  EXPECT_THAT(std::string(u.status().message()), HasSubstr("etc/passwd"));
}

TEST_F(UserTest, WalkReadsPlainFiles) {
  auto u = ResolveUser(root_, "app:staff", RootResolver::kWalk);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 50u);
}

TEST(Capabilities, DockerDefaults) {
  auto spec = Gen(Image({"/x"}, {}), Opts());
  auto caps = spec["process"]["capabilities"];
  Strings bounding = caps["bounding"].get<Strings>();
  EXPECT_EQ(bounding.size(), 14u);
  for (const char* cap : {"CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE"}) {
    EXPECT_NE(std::find(bounding.begin(), bounding.end(), cap), bounding.end()) << cap;
  }
  for (const char* cap : {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"}) {
    EXPECT_EQ(std::find(bounding.begin(), bounding.end(), cap), bounding.end()) << cap;
  }
  EXPECT_EQ(caps["effective"], caps["bounding"]);
  EXPECT_EQ(caps["permitted"], caps["bounding"]);
  EXPECT_TRUE(spec["process"]["noNewPrivileges"].get<bool>());
  EXPECT_EQ(spec["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
  EXPECT_EQ(spec["process"]["rlimits"][0]["hard"], 1024);
  EXPECT_EQ(spec["process"]["rlimits"][0]["soft"], 1024);
}

Strings NamespaceTypes(const nlohmann::json& spec) {
  Strings out;
  for (const auto& ns : spec["linux"]["namespaces"]) {
    out.push_back(ns["type"]);
  }
  return out;
}

TEST(Namespaces, DefaultHostNetAndNetnsPath) {
  EXPECT_THAT(NamespaceTypes(Gen(Image({"/x"}, {}), Opts())),
              ElementsAre("pid", "ipc", "uts", "mount", "network"));
  SpecOptions o = Opts();
  o.host_network = true;
  EXPECT_THAT(NamespaceTypes(Gen(Image({"/x"}, {}), o)),
              ElementsAre("pid", "ipc", "uts", "mount"));
  o.host_network = false;
  o.netns_path = "/var/run/netns/blue";
  auto spec = Gen(Image({"/x"}, {}), o);
  EXPECT_EQ(spec["linux"]["namespaces"][4]["type"], "network");
  EXPECT_EQ(spec["linux"]["namespaces"][4]["path"], "/var/run/netns/blue");
  o.host_network = true;
  ExpectInvalid(Image({"/x"}, {}), o, "/var/run/netns/blue");
  o.host_network = false;
  o.netns_path = "netns/blue";
  ExpectInvalid(Image({"/x"}, {}), o, "netns/blue");
}

TEST(Resources, LimitsAndCgroupsPath) {
  auto spec = Gen(Image({"/x"}, {}), Opts());
  EXPECT_EQ(spec["linux"]["cgroupsPath"], "/default/c1");
  EXPECT_FALSE(spec["linux"]["resources"].contains("memory"));
  EXPECT_FALSE(spec["linux"]["resources"].contains("cpu"));
  EXPECT_FALSE(spec["linux"]["resources"].contains("pids"));
  EXPECT_EQ(spec["linux"]["resources"]["devices"][0]["allow"], false);

  SpecOptions o = Opts();
  o.ns = "k8s";
  o.memory_limit_bytes = 64 << 20;
  o.cpus = 1.5;
  o.pids_limit = 100;
  spec = Gen(Image({"/x"}, {}), o);
  EXPECT_EQ(spec["linux"]["cgroupsPath"], "/k8s/c1");
  EXPECT_EQ(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_EQ(spec["linux"]["resources"]["cpu"]["quota"], 150000);
  EXPECT_EQ(spec["linux"]["resources"]["cpu"]["period"], 100000);
  EXPECT_EQ(spec["linux"]["resources"]["pids"]["limit"], 100);
  o.cgroups_path = "/berth/x";
  EXPECT_EQ(Gen(Image({"/x"}, {}), o)["linux"]["cgroupsPath"], "/berth/x");

  o = Opts();
  o.memory_limit_bytes = -1;
  ExpectInvalid(Image({"/x"}, {}), o, "memory limit -1");
  o = Opts();
  o.cpus = -0.5;
  ExpectInvalid(Image({"/x"}, {}), o, "cpus -0.5");
  o = Opts();
  o.pids_limit = -2;
  ExpectInvalid(Image({"/x"}, {}), o, "pids limit -2");
}

const nlohmann::json* FindMount(const nlohmann::json& spec, const std::string& destination) {
  for (const auto& m : spec["mounts"]) {
    if (m["destination"] == destination) {
      return &m;
    }
  }
  return nullptr;
}

TEST(Mounts, DefaultsMaskedAndReadonlyPaths) {
  auto spec = Gen(Image({"/x"}, {}), Opts());
  for (const char* d : {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                        "/sys/fs/cgroup"}) {
    EXPECT_NE(FindMount(spec, d), nullptr) << d;
  }
  EXPECT_EQ((*FindMount(spec, "/sys"))["options"].back(), "ro");
  EXPECT_EQ((*FindMount(spec, "/sys/fs/cgroup"))["type"], "cgroup");
  EXPECT_EQ((*FindMount(spec, "/sys/fs/cgroup"))["options"].back(), "ro");
  EXPECT_EQ(spec["linux"]["maskedPaths"].size(), 10u);
  EXPECT_EQ(spec["linux"]["maskedPaths"][2], "/proc/kcore");
  EXPECT_EQ(spec["linux"]["readonlyPaths"].size(), 5u);
  EXPECT_EQ(spec["root"]["path"], "rootfs");
  EXPECT_EQ(spec["root"]["readonly"], false);
  EXPECT_FALSE(spec.contains("hostname"));
  EXPECT_EQ(FindMount(spec, "/etc/hosts"), nullptr);
}

TEST(Mounts, BindsHostsResolvHostnameReadonlyRoot) {
  SpecOptions o = Opts();
  o.binds = {{"/srv/data", "/data", false}, {"/etc/ssl", "/certs", true}};
  o.hosts_path = "/var/lib/berth/c1/hosts";
  o.resolv_conf_path = "/etc/resolv.conf";
  o.hostname = "box";
  o.readonly_rootfs = true;
  auto spec = Gen(Image({"/x"}, {}), o);
  const nlohmann::json* data = FindMount(spec, "/data");
  ASSERT_NE(data, nullptr);
  EXPECT_EQ((*data)["type"], "bind");
  EXPECT_EQ((*data)["source"], "/srv/data");
  EXPECT_THAT((*data)["options"].get<Strings>(), ElementsAre("rbind", "rprivate", "rw"));
  EXPECT_THAT((*FindMount(spec, "/certs"))["options"].get<Strings>(),
              ElementsAre("rbind", "rprivate", "ro"));
  EXPECT_EQ((*FindMount(spec, "/etc/hosts"))["source"], "/var/lib/berth/c1/hosts");
  EXPECT_EQ((*FindMount(spec, "/etc/resolv.conf"))["options"].back(), "ro");
  EXPECT_EQ(spec["hostname"], "box");
  EXPECT_EQ(spec["root"]["readonly"], true);
}

TEST(Mounts, RelativeOrDotDotPathsAreRefused) {
  struct Case {
    BindMount bind;
    const char* names;
  };
  for (const Case& c : {Case{{"data", "/data", false}, "bind mount source \"data\""},
                        Case{{"/srv/../etc", "/data", false}, "bind mount source \"/srv/../etc\""},
                        Case{{"/srv/..", "/data", false}, "\"..\""},
                        Case{{"/srv", "data", false}, "bind mount destination \"data\""},
                        Case{{"/srv", "/x/../../etc", true}, "bind mount destination"}}) {
    SpecOptions o = Opts();
    o.binds = {c.bind};
    ExpectInvalid(Image({"/x"}, {}), o, c.names);
  }
  SpecOptions o = Opts();
  o.hosts_path = "hosts";
  ExpectInvalid(Image({"/x"}, {}), o, "hosts file \"hosts\"");
  // A name that merely contains dots is fine.
  o = Opts();
  o.binds = {{"/srv/..data/x..", "/d", false}};
  EXPECT_TRUE(GenerateSpec(Image({"/x"}, {}), o).ok());
}

bool Allows(const nlohmann::json& profile, const std::string& name) {
  for (const auto& rule : profile["syscalls"]) {
    if (rule["action"] != "SCMP_ACT_ALLOW") {
      continue;
    }
    for (const auto& n : rule["names"]) {
      if (n == name) {
        return true;
      }
    }
  }
  return false;
}

TEST(Seccomp, DefaultProfilePerArch) {
  SpecOptions o = Opts();
  o.arch = "amd64";
  auto profile = Gen(Image({"/x"}, {}), o)["linux"]["seccomp"];
  EXPECT_EQ(profile["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_THAT(profile["architectures"].get<Strings>(),
              ElementsAre("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"));
  for (const char* allowed : {"read", "write", "execve", "openat2", "arch_prctl", "chroot",
                              "clone", "ptrace"}) {
    EXPECT_TRUE(Allows(profile, allowed)) << allowed;
  }
  // Without CAP_SYS_ADMIN: no mount, no unshare, no setns; clone only without namespace flags.
  for (const char* denied : {"mount", "umount2", "unshare", "setns", "reboot", "kexec_load",
                             "init_module", "bpf", "keyctl", "add_key", "set_tls"}) {
    EXPECT_FALSE(Allows(profile, denied)) << denied;
  }
  bool clone_masked = false;
  bool clone3_enosys = false;
  for (const auto& rule : profile["syscalls"]) {
    if (rule["names"][0] == "clone") {
      clone_masked = rule["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" &&
                     rule["args"][0]["value"] == 0x7E020000 && rule["args"][0]["valueTwo"] == 0;
    }
    if (rule["names"][0] == "clone3") {
      clone3_enosys = rule["action"] == "SCMP_ACT_ERRNO" && rule["errnoRet"] == 38;
    }
  }
  EXPECT_TRUE(clone_masked);
  EXPECT_TRUE(clone3_enosys);

  o.arch = "arm64";
  profile = Gen(Image({"/x"}, {}), o)["linux"]["seccomp"];
  EXPECT_THAT(profile["architectures"].get<Strings>(),
              ElementsAre("SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"));
  EXPECT_TRUE(Allows(profile, "set_tls"));
  EXPECT_FALSE(Allows(profile, "arch_prctl"));

  o.arch = "s390x";
  ExpectInvalid(Image({"/x"}, {}), o, "s390x");
  o.seccomp = false;
  EXPECT_FALSE(Gen(Image({"/x"}, {}), o)["linux"].contains("seccomp"));
}

TEST(Seccomp, CapabilitiesUnlockTheirSyscalls) {
  auto profile = DefaultSeccompProfile("x86_64", {"CAP_SYS_ADMIN", "CAP_SYS_TIME"});
  ASSERT_TRUE(profile.ok());
  EXPECT_TRUE(Allows(*profile, "mount"));
  EXPECT_TRUE(Allows(*profile, "settimeofday"));
  EXPECT_FALSE(Allows(*profile, "chroot"));
  for (const auto& rule : (*profile)["syscalls"]) {
    EXPECT_NE(rule["names"][0], "clone3") << "clone3 is allowed outright with CAP_SYS_ADMIN";
  }
}

}  // namespace
}  // namespace berth::oci
