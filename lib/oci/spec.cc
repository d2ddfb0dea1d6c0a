// The OCI runtime spec from an image config and the user's options: containerd's default Unix
// spec (oci/spec.go populateDefaultUnixSpec, oci/mounts.go) with the SpecOpts its clients apply
// (WithImageConfig, WithUser..., WithMemoryLimit, WithHostNamespace, ...).

#include "lib/oci/spec.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/status_macros.h"

namespace berth::oci {
namespace {

constexpr char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int64_t kCpuPeriod = 100000;  // microseconds, as docker's --cpus uses

// Applies `entry` to `env` as containerd's replaceOrAppendEnvValues does: "K=V" replaces the
// value of K or appends; "K" alone removes K.
void MergeEnv(std::vector<std::string>* env, const std::string& entry) {
  size_t eq = entry.find('=');
  std::string key = entry.substr(0, eq);
  for (auto it = env->begin(); it != env->end(); ++it) {
    if (it->substr(0, it->find('=')) == key) {
      if (eq == std::string::npos) {
        env->erase(it);
      } else {
        *it = entry;
      }
      return;
    }
  }
  if (eq != std::string::npos) {
    env->push_back(entry);
  }
}

bool HasKey(const std::vector<std::string>& env, absl::string_view key) {
  for (const std::string& e : env) {
    if (absl::StartsWith(e, absl::StrCat(key, "="))) {
      return true;
    }
  }
  return false;
}

// An absolute path with no ".." component (what a bind source or destination must be).
absl::Status CheckAbsoluteClean(absl::string_view what, absl::string_view path) {
  if (!absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", path, "\": must be an absolute path"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(what, " \"", path, "\": contains \"..\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ProcessArgs(const images::ImageConfig& image,
                                                     const SpecOptions& opts) {
  std::vector<std::string> args;
  std::vector<std::string> cmd = image.cmd;
  if (opts.entrypoint.has_value()) {
    // docker: --entrypoint resets the image's Cmd too.
    args = *opts.entrypoint;
    cmd.clear();
  } else {
    args = image.entrypoint;
  }
  if (!opts.args.empty()) {
    cmd = opts.args;
  }
  args.insert(args.end(), cmd.begin(), cmd.end());
  if (args.empty() || args[0].empty()) {
    return absl::InvalidArgumentError(
        "process args: no command (the image has no Entrypoint or Cmd and none was given)");
  }
  return args;
}

nlohmann::json Mount(absl::string_view destination, absl::string_view type,
                     absl::string_view source, const std::vector<std::string>& options) {
  return {{"destination", destination}, {"type", type}, {"source", source}, {"options", options}};
}

nlohmann::json DefaultMounts() {
  nlohmann::json m = nlohmann::json::array();
  m.push_back(Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  m.push_back(
      Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  m.push_back(Mount("/dev/pts", "devpts", "devpts",
                    {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  m.push_back(Mount("/dev/shm", "tmpfs", "shm",
                    {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  m.push_back(Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  m.push_back(Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  m.push_back(Mount("/sys/fs/cgroup", "cgroup", "cgroup",
                    {"nosuid", "noexec", "nodev", "relatime", "ro"}));
  m.push_back(
      Mount("/run", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  return m;
}

absl::StatusOr<nlohmann::json> Namespaces(const SpecOptions& opts) {
  if (opts.host_network && !opts.netns_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "network: host network and netns path \"", opts.netns_path, "\" are exclusive"));
  }
  nlohmann::json ns = nlohmann::json::array();
  for (const char* type : {"pid", "ipc", "uts", "mount"}) {
    ns.push_back({{"type", type}});
  }
  if (!opts.netns_path.empty()) {
    if (!absl::StartsWith(opts.netns_path, "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat("netns path \"", opts.netns_path, "\": must be an absolute path"));
    }
    ns.push_back({{"type", "network"}, {"path", opts.netns_path}});
  } else if (!opts.host_network) {
    ns.push_back({{"type", "network"}});
  }
  return ns;
}

absl::StatusOr<nlohmann::json> Resources(const SpecOptions& opts) {
  // Devices: deny all; runc adds the default allow-list for the devices it creates.
  nlohmann::json r = {{"devices", {{{"allow", false}, {"access", "rwm"}}}}};
  if (opts.memory_limit_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory limit ", opts.memory_limit_bytes, ": must not be negative"));
  }
  if (opts.memory_limit_bytes > 0) {
    r["memory"] = {{"limit", opts.memory_limit_bytes}};
  }
  if (!(opts.cpus >= 0) || !std::isfinite(opts.cpus)) {
    return absl::InvalidArgumentError(absl::StrCat("cpus ", opts.cpus, ": must not be negative"));
  }
  if (opts.cpus > 0) {
    auto quota = static_cast<int64_t>(std::llround(opts.cpus * kCpuPeriod));
    if (quota < 1000) {
      return absl::InvalidArgumentError(absl::StrCat("cpus ", opts.cpus, ": below 0.01"));
    }
    r["cpu"] = {{"quota", quota}, {"period", kCpuPeriod}};
  }
  if (opts.pids_limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pids limit ", opts.pids_limit, ": must not be negative"));
  }
  if (opts.pids_limit > 0) {
    r["pids"] = {{"limit", opts.pids_limit}};
  }
  return r;
}

absl::StatusOr<nlohmann::json> UserMounts(const SpecOptions& opts) {
  nlohmann::json m = nlohmann::json::array();
  for (const BindMount& b : opts.binds) {
    BERTH_RETURN_IF_ERROR(CheckAbsoluteClean("bind mount source", b.source));
    BERTH_RETURN_IF_ERROR(CheckAbsoluteClean("bind mount destination", b.destination));
    m.push_back(Mount(b.destination, "bind", b.source,
                      {"rbind", "rprivate", b.read_only ? "ro" : "rw"}));
  }
  struct File {
    const char* what;
    const std::string& source;
    const char* destination;
  };
  for (const File& f : {File{"hosts file", opts.hosts_path, "/etc/hosts"},
                        File{"resolv.conf", opts.resolv_conf_path, "/etc/resolv.conf"}}) {
    if (!f.source.empty()) {
      BERTH_RETURN_IF_ERROR(CheckAbsoluteClean(f.what, f.source));
      m.push_back(Mount(f.destination, "bind", f.source, {"rbind", "rprivate", "ro"}));
    }
  }
  return m;
}

std::string HostArch() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#else
  return "unknown";
#endif
}

}  // namespace

std::vector<std::string> DefaultCapabilities() {
  return {"CAP_CHOWN",        "CAP_DAC_OVERRIDE",     "CAP_FSETID",     "CAP_FOWNER",
          "CAP_MKNOD",        "CAP_NET_RAW",          "CAP_SETGID",     "CAP_SETUID",
          "CAP_SETFCAP",      "CAP_SETPCAP",          "CAP_NET_BIND_SERVICE",
          "CAP_SYS_CHROOT",   "CAP_KILL",             "CAP_AUDIT_WRITE"};
}

absl::StatusOr<nlohmann::json> GenerateSpec(const images::ImageConfig& image,
                                            const SpecOptions& opts) {
  if (opts.id.empty() && opts.cgroups_path.empty()) {
    return absl::InvalidArgumentError("spec: a container id or a cgroups path is required");
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> args, ProcessArgs(image, opts));

  std::vector<std::string> env;
  for (const std::string& e : image.env) {
    MergeEnv(&env, e);
  }
  for (const std::string& e : opts.env) {
    MergeEnv(&env, e);
  }
  if (!HasKey(env, "PATH")) {
    env.insert(env.begin(), kDefaultPath);
  }
  if (opts.terminal && !HasKey(env, "TERM")) {
    env.push_back("TERM=xterm");
  }

  std::string cwd = !opts.working_dir.empty() ? opts.working_dir : image.working_dir;
  if (cwd.empty()) {
    cwd = "/";
  }
  if (!absl::StartsWith(cwd, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("working dir \"", cwd, "\": must be an absolute path"));
  }

  BERTH_ASSIGN_OR_RETURN(ResolvedUser user,
                         ResolveUser(opts.rootfs_path, opts.user.empty() ? image.user : opts.user));
  std::vector<uint32_t> gids = user.additional_gids;
  gids.insert(gids.end(), opts.additional_gids.begin(), opts.additional_gids.end());
  nlohmann::json user_json = {{"uid", user.uid}, {"gid", user.gid}};
  if (!gids.empty()) {
    user_json["additionalGids"] = gids;
  }

  std::vector<std::string> caps = DefaultCapabilities();
  nlohmann::json process = {
      {"terminal", opts.terminal},
      {"user", user_json},
      {"args", args},
      {"env", env},
      {"cwd", cwd},
      {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
      {"noNewPrivileges", true},
  };
  if (opts.terminal && opts.console_height > 0 && opts.console_width > 0) {
    process["consoleSize"] = {{"height", opts.console_height}, {"width", opts.console_width}};
  }

  BERTH_ASSIGN_OR_RETURN(nlohmann::json namespaces, Namespaces(opts));
  BERTH_ASSIGN_OR_RETURN(nlohmann::json resources, Resources(opts));
  nlohmann::json mounts = DefaultMounts();
  BERTH_ASSIGN_OR_RETURN(nlohmann::json user_mounts, UserMounts(opts));
  for (auto& m : user_mounts) {
    mounts.push_back(std::move(m));
  }

  nlohmann::json linux_json = {
      {"namespaces", namespaces},
      {"resources", resources},
      {"cgroupsPath",
       opts.cgroups_path.empty() ? absl::StrCat("/", opts.ns, "/", opts.id) : opts.cgroups_path},
      {"maskedPaths",
       {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi"}},
      {"readonlyPaths",
       {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
  };
  if (opts.seccomp) {
    BERTH_ASSIGN_OR_RETURN(linux_json["seccomp"],
                           DefaultSeccompProfile(opts.arch.empty() ? HostArch() : opts.arch, caps));
  }

  nlohmann::json spec = {
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", opts.root_path}, {"readonly", opts.readonly_rootfs}}},
      {"mounts", mounts},
      {"linux", linux_json},
  };
  if (!opts.hostname.empty()) {
    spec["hostname"] = opts.hostname;
  }
  return spec;
}

}  // namespace berth::oci
