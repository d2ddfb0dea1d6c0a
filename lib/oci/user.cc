// User and group lookup inside an image's root filesystem, for the spec's process user.

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"

namespace berth::oci {
namespace {

// Opens `relative` (no leading '/') inside `root_fd` for reading, every symlink resolved as if
// the root were "/". Without openat2 (ENOSYS) it walks the components with O_NOFOLLOW and
// refuses any symlink instead. Returns the errno (0 on success).
int OpenInRoot(int root_fd, const std::string& relative, RootResolver resolver,
               UniqueFd* out) {
  if (resolver == RootResolver::kAuto) {
    struct open_how how = {};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof(how));
    if (fd >= 0) {
      out->Reset(static_cast<int>(fd));
      return 0;
    }
    if (errno != ENOSYS) {
      return errno;
    }
  }
  std::vector<std::string> parts = absl::StrSplit(relative, '/', absl::SkipEmpty());
  UniqueFd dir(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (!dir.valid()) {
    return errno;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "..") {
      return EXDEV;
    }
    bool last = i + 1 == parts.size();
    int flags = O_CLOEXEC | O_NOFOLLOW | (last ? O_RDONLY : O_PATH | O_DIRECTORY);
    UniqueFd next(::openat(dir.get(), parts[i].c_str(), flags));
    if (!next.valid()) {
      return errno;
    }
    dir = std::move(next);
  }
  *out = std::move(dir);
  return 0;
}

// The file's lines, or none when it does not exist in the root.
absl::StatusOr<std::vector<std::string>> ReadLinesInRoot(absl::string_view rootfs,
                                                         const std::string& relative,
                                                         RootResolver resolver) {
  if (rootfs.empty()) {
    return std::vector<std::string>{};
  }
  std::string root(rootfs);
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("rootfs ", root));
  }
  UniqueFd fd;
  int err = OpenInRoot(root_fd.get(), relative, resolver, &fd);
  if (err == ENOENT || err == ENOTDIR) {
    return std::vector<std::string>{};
  }
  if (err != 0) {
    return ErrnoStatus(err, absl::StrCat(root, "/", relative));
  }
  BERTH_ASSIGN_OR_RETURN(std::string data,
                         ReadAll(fd.get(), absl::StrCat(root, "/", relative), 16u << 20));
  return std::vector<std::string>(absl::StrSplit(data, '\n', absl::SkipEmpty()));
}

// passwd: name:password:uid:gid:gecos:home:shell; group: name:password:gid:user1,user2.
struct Entry {
  std::string name;
  uint32_t id = 0;
  uint32_t gid = 0;                  // passwd only
  std::vector<std::string> members;  // group only
};

std::vector<Entry> ParsePasswd(const std::vector<std::string>& lines) {
  std::vector<Entry> out;
  for (const std::string& line : lines) {
    std::vector<std::string> f = absl::StrSplit(line, ':');
    Entry e;
    if (f.size() < 4 || !absl::SimpleAtoi(f[2], &e.id) || !absl::SimpleAtoi(f[3], &e.gid)) {
      continue;  // comments and broken lines, as libc skips them
    }
    e.name = f[0];
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Entry> ParseGroup(const std::vector<std::string>& lines) {
  std::vector<Entry> out;
  for (const std::string& line : lines) {
    std::vector<std::string> f = absl::StrSplit(line, ':');
    Entry e;
    if (f.size() < 3 || !absl::SimpleAtoi(f[2], &e.id)) {
      continue;
    }
    e.name = f[0];
    if (f.size() > 3) {
      e.members = absl::StrSplit(f[3], ',', absl::SkipEmpty());
    }
    out.push_back(std::move(e));
  }
  return out;
}

// The first entry that matches, or nullptr (libc's getpwnam takes the first too).
template <typename Pred>
const Entry* Find(const std::vector<Entry>& entries, Pred pred) {
  for (const Entry& e : entries) {
    if (pred(e)) {
      return &e;
    }
  }
  return nullptr;
}

bool IsNumeric(absl::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == absl::string_view::npos;
}

absl::StatusOr<uint32_t> ParseId(absl::string_view s, absl::string_view user) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(s, &v) || v > UINT32_MAX - 1) {
    return absl::InvalidArgumentError(absl::StrCat("user \"", user, "\": id ", s, " out of range"));
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

absl::StatusOr<ResolvedUser> ResolveUser(absl::string_view rootfs_path, absl::string_view user,
                                         RootResolver resolver) {
  ResolvedUser out;
  if (user.empty()) {
    return out;
  }
  std::vector<std::string> parts = absl::StrSplit(user, ':');
  if (parts.size() > 2 || parts[0].empty() || (parts.size() == 2 && parts[1].empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\": want uid, uid:gid, name or name:group"));
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> passwd_lines,
                         ReadLinesInRoot(rootfs_path, "etc/passwd", resolver));
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> group_lines,
                         ReadLinesInRoot(rootfs_path, "etc/group", resolver));
  std::vector<Entry> passwd = ParsePasswd(passwd_lines);
  std::vector<Entry> groups = ParseGroup(group_lines);

  const Entry* pw = nullptr;
  if (IsNumeric(parts[0])) {
    BERTH_ASSIGN_OR_RETURN(out.uid, ParseId(parts[0], user));
    pw = Find(passwd, [&](const Entry& e) { return e.id == out.uid; });
  } else {
    pw = Find(passwd, [&](const Entry& e) { return e.name == parts[0]; });
    if (pw == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("user \"", user, "\": no user named \"",
                                                     parts[0], "\" in the image's /etc/passwd"));
    }
    out.uid = pw->id;
  }
  out.gid = pw != nullptr ? pw->gid : 0;

  if (parts.size() == 2) {
    if (IsNumeric(parts[1])) {
      BERTH_ASSIGN_OR_RETURN(out.gid, ParseId(parts[1], user));
    } else {
      const Entry* gr = Find(groups, [&](const Entry& e) { return e.name == parts[1]; });
      if (gr == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("user \"", user, "\": no group named \"",
                                                       parts[1], "\" in the image's /etc/group"));
      }
      out.gid = gr->id;
    }
  } else if (pw != nullptr) {
    // Supplementary groups come from membership only when the group is not given explicitly,
    // as runc's user lookup does.
    for (const Entry& g : groups) {
      for (const std::string& m : g.members) {
        if (m == pw->name && g.id != out.gid) {
          out.additional_gids.push_back(g.id);
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace berth::oci
