#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/base/posix.h"
#include "lib/mount/mount.h"

namespace berth::mount {

namespace {

constexpr unsigned long kPropagationFlags = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;

struct FlagOption {
  bool clear;
  unsigned long flag;
};

const std::map<std::string, FlagOption>& FlagOptions() {
  static const auto* options = new std::map<std::string, FlagOption>{
      {"async", {true, MS_SYNCHRONOUS}},
      {"atime", {true, MS_NOATIME}},
      {"bind", {false, MS_BIND}},
      {"defaults", {false, 0}},
      {"dev", {true, MS_NODEV}},
      {"diratime", {true, MS_NODIRATIME}},
      {"dirsync", {false, MS_DIRSYNC}},
      {"exec", {true, MS_NOEXEC}},
      {"mand", {false, MS_MANDLOCK}},
      {"noatime", {false, MS_NOATIME}},
      {"nodev", {false, MS_NODEV}},
      {"nodiratime", {false, MS_NODIRATIME}},
      {"noexec", {false, MS_NOEXEC}},
      {"nomand", {true, MS_MANDLOCK}},
      {"norelatime", {true, MS_RELATIME}},
      {"nostrictatime", {true, MS_STRICTATIME}},
      {"nosuid", {false, MS_NOSUID}},
      {"rbind", {false, MS_BIND | MS_REC}},
      {"relatime", {false, MS_RELATIME}},
      {"remount", {false, MS_REMOUNT}},
      {"ro", {false, MS_RDONLY}},
      {"rw", {true, MS_RDONLY}},
      {"strictatime", {false, MS_STRICTATIME}},
      {"suid", {true, MS_NOSUID}},
      {"sync", {false, MS_SYNCHRONOUS}},
  };
  return *options;
}

const std::map<std::string, unsigned long>& PropagationOptions() {
  static const auto* options = new std::map<std::string, unsigned long>{
      {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
      {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
      {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
      {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
  };
  return *options;
}

size_t OptionsSize(const std::vector<std::string>& options) {
  size_t size = 0;
  for (const std::string& o : options) {
    size += o.size() + 1;
  }
  return size;
}


std::string Describe(const Mount& m) {
  return absl::StrCat(m.type, " mount of ", m.source, " (", absl::StrJoin(m.options, ","), ")");
}

// mount(2) with relative paths in `data` resolved from `chdir`: the call runs on a new thread
// that unshares its fs attributes (cwd) from the process, so no other thread sees the chdir.
int MountAt(const std::string& chdir, const std::string& source, const std::string& target,
            const std::string& type, unsigned long flags, const std::string& data) {
  if (chdir.empty()) {
    return ::mount(source.c_str(), target.c_str(), type.c_str(), flags,
                   data.empty() ? nullptr : data.c_str()) == 0
               ? 0
               : errno;
  }
  int result = 0;
  std::thread worker([&] {
    if (::unshare(CLONE_FS) != 0) {
      result = errno;
      return;
    }
    if (::chdir(chdir.c_str()) != 0) {
      result = errno;
      return;
    }
    if (::mount(source.c_str(), target.c_str(), type.c_str(), flags,
                data.empty() ? nullptr : data.c_str()) != 0) {
      result = errno;
    }
  });
  worker.join();
  return result;
}

class LinuxMounter : public Mounter {
 public:
  absl::Status MountAll(const std::vector<Mount>& mounts, const std::string& target) override {
    std::vector<std::string> mounted;
    for (const Mount& m : mounts) {
      std::string at = target;
      if (!m.target.empty()) {
        at = absl::StrCat(target, "/", m.target);
      }
      if (absl::Status st = MountOne(m, at); !st.ok()) {
        for (auto it = mounted.rbegin(); it != mounted.rend(); ++it) {
          (void)::umount2(it->c_str(), MNT_DETACH);
        }
        return st;
      }
      mounted.push_back(at);
    }
    return absl::OkStatus();
  }

  absl::Status Unmount(const std::string& target) override {
    // Stacked mounts come off one at a time; EINVAL means nothing (more) is mounted there.
    for (int i = 0; i < 1024; ++i) {
      if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0) {
        continue;
      }
      int err = errno;
      if (err == EINVAL || err == ENOENT) {
        return absl::OkStatus();
      }
      if (err == EINTR) {
        continue;
      }
      return ErrnoStatus(err, absl::StrCat("unmount ", target));
    }
    return absl::InternalError(absl::StrCat("unmount ", target, ": too many stacked mounts"));
  }

 private:
  static absl::Status MountOne(const Mount& m, const std::string& target) {
    if (target.empty() || target[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("mount target must be an absolute path: \"", target, "\""));
    }
    std::vector<std::string> options = m.options;
    std::string chdir;
    // containerd leaves 512 bytes of slack below the page size before compacting.
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    if (m.type == "overlay" && OptionsSize(options) >= page - 512) {
      chdir = CompactLowerdirs(&options);
    }
    ParsedOptions parsed = ParseOptions(options);
    if (parsed.data.size() >= page) {
      return absl::InvalidArgumentError(absl::StrCat(
          Describe(m), ": mount options are too long (", parsed.data.size(), " bytes)"));
    }
    std::string type = m.type;
    unsigned long flags = parsed.flags;
    if (type == "bind") {
      flags |= MS_BIND | MS_REC;
      type = "none";
    }
    if ((flags & MS_REMOUNT) == 0 || !parsed.data.empty()) {
      if (int err = MountAt(chdir, m.source, target, type, flags, parsed.data); err != 0) {
        return ErrnoStatus(err, absl::StrCat(Describe(m), " at ", target));
      }
    }
    if (parsed.propagation != 0) {
      if (::mount("", target.c_str(), nullptr, parsed.propagation, nullptr) != 0) {
        int err = errno;
        (void)::umount2(target.c_str(), MNT_DETACH);
        return ErrnoStatus(err, absl::StrCat("set propagation of ", target));
      }
    }
    // A bind mount ignores MS_RDONLY on its first call: remount to make it read-only.
    if ((flags & MS_BIND) != 0 && (flags & MS_RDONLY) != 0 && (flags & MS_REMOUNT) == 0) {
      if (::mount("", target.c_str(), nullptr, flags | MS_REMOUNT, nullptr) != 0) {
        int err = errno;
        (void)::umount2(target.c_str(), MNT_DETACH);
        return ErrnoStatus(err, absl::StrCat("remount read-only ", target));
      }
    }
    return absl::OkStatus();
  }
};

}  // namespace

Mounter& SystemMounter() {
  static auto* mounter = new LinuxMounter();
  return *mounter;
}

std::optional<std::string> OptionValue(const std::vector<std::string>& options,
                                       const std::string& name) {
  std::string prefix = name + "=";
  for (const std::string& o : options) {
    if (absl::StartsWith(o, prefix)) {
      return o.substr(prefix.size());
    }
  }
  return std::nullopt;
}

std::optional<std::string> WritableDir(const std::vector<Mount>& mounts) {
  if (mounts.size() != 1) {
    return std::nullopt;
  }
  const Mount& m = mounts[0];
  ParsedOptions parsed = ParseOptions(m.options);
  if ((parsed.flags & MS_RDONLY) != 0) {
    return std::nullopt;
  }
  if (m.type == "bind" || (parsed.flags & MS_BIND) != 0) {
    return m.source;
  }
  if (m.type == "overlay") {
    return OptionValue(m.options, "upperdir");
  }
  return std::nullopt;
}

ParsedOptions ParseOptions(const std::vector<std::string>& options) {
  ParsedOptions parsed;
  std::vector<std::string> data;
  for (const std::string& o : options) {
    if (auto it = FlagOptions().find(o); it != FlagOptions().end()) {
      if (it->second.clear) {
        parsed.flags &= ~it->second.flag;
      } else {
        parsed.flags |= it->second.flag;
      }
      continue;
    }
    if (auto it = PropagationOptions().find(o); it != PropagationOptions().end()) {
      parsed.propagation |= it->second;
      continue;
    }
    data.push_back(o);
  }
  parsed.flags &= ~kPropagationFlags;
  parsed.data = absl::StrJoin(data, ",");
  return parsed;
}

std::string CompactLowerdirs(std::vector<std::string>* options) {
  auto it = std::find_if(options->begin(), options->end(), [](const std::string& o) {
    return absl::StartsWith(o, "lowerdir=");
  });
  if (it == options->end()) {
    return "";
  }
  std::vector<std::string> dirs = absl::StrSplit(it->substr(strlen("lowerdir=")), ':');
  if (dirs.size() < 2) {
    return "";
  }
  for (const std::string& d : dirs) {
    if (d.empty() || d[0] != '/') {
      return "";
    }
  }
  auto [min, max] = std::minmax_element(dirs.begin(), dirs.end());
  size_t n = 0;
  while (n < min->size() && n < max->size() && (*min)[n] == (*max)[n]) {
    ++n;
  }
  // Back up to a whole directory that is a parent of every lowerdir (ids are digits, so the
  // common prefix of ".../snapshots/12/fs" and ".../snapshots/13/fs" is ".../snapshots/1").
  std::string common = min->substr(0, n);
  size_t slash = common.rfind('/');
  if (slash == std::string::npos || slash == 0) {
    return "";
  }
  common.resize(slash + 1);
  std::vector<std::string> relative;
  relative.reserve(dirs.size());
  for (const std::string& d : dirs) {
    relative.push_back(d.substr(common.size()));
    if (relative.back().empty()) {
      return "";
    }
  }
  std::string lowerdir = absl::StrCat("lowerdir=", absl::StrJoin(relative, ":"));
  options->erase(it);
  options->push_back(std::move(lowerdir));
  return common;
}

}  // namespace berth::mount
