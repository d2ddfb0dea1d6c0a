#include "services/execd/oom_watcher.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/cgroups/cgroup_stats.h"

namespace berth::execd {
namespace {

constexpr char kMemoryRoot[] = "/sys/fs/cgroup/memory";

// The `oom_kill N` count in memory.oom_control (v1) or memory.events (v2); -1 when the
// cgroup is gone.
int64_t OomKills(const std::string& oom_control) {
  absl::StatusOr<std::string> text = ReadFile(oom_control);
  if (!text.ok()) {
    return -1;
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    int64_t n = 0;
    if (absl::ConsumePrefix(&line, "oom_kill ") && absl::SimpleAtoi(line, &n)) {
      return n;
    }
  }
  return 0;
}

}  // namespace

OomWatcher::OomWatcher(std::function<void(const std::string& key)> on_oom)
    : on_oom_(std::move(on_oom)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      inotify_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {
  for (int fd : {wake_.get(), inotify_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  thread_ = std::thread([this] { Run(); });
}

OomWatcher::~OomWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

absl::Status OomWatcher::Add(const std::string& key, pid_t pid) {
  BERTH_ASSIGN_OR_RETURN(cgroups::CgroupPaths paths, cgroups::ProcessCgroups(pid));
  if (::access(absl::StrCat(kMemoryRoot, "/cgroup.event_control").c_str(), F_OK) == 0) {
    auto memory = paths.find("memory");
    if (memory == paths.end()) {
      return absl::NotFoundError(absl::StrCat("process ", pid, ": no memory cgroup"));
    }
    return AddV1(key, absl::StrCat(kMemoryRoot, memory->second));
  }
  auto unified = paths.find("");
  if (cgroups::DetectMode() != cgroups::Mode::kUnified || unified == paths.end()) {
    return absl::UnimplementedError(
        "no cgroup v1 memory controller and no unified hierarchy: OOM events are not watched "
        "on this host");
  }
  return AddMemoryEvents(key,
                         absl::StrCat(cgroups::kCgroupRoot, unified->second, "/memory.events"));
}

absl::Status OomWatcher::AddV1(const std::string& key, const std::string& cgroup) {
  Watch w;
  w.key = key;
  w.counter = cgroup + "/memory.oom_control";
  w.kills = OomKills(w.counter);
  w.event.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd control(::open(w.counter.c_str(), O_RDONLY | O_CLOEXEC));
  if (!w.event.valid() || !control.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", w.counter));
  }
  std::string registration = absl::StrCat(w.event.get(), " ", control.get());
  UniqueFd event_control(
      ::open((cgroup + "/cgroup.event_control").c_str(), O_WRONLY | O_CLOEXEC));
  if (!event_control.valid() ||
      ::write(event_control.get(), registration.data(), registration.size()) < 0) {
    return ErrnoStatus(errno, absl::StrCat("register for OOM events in ", cgroup));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = w.event.get();
  absl::MutexLock lock(&mu_);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.event.get(), &ev);
  watches_[key] = std::move(w);
  return absl::OkStatus();
}

absl::Status OomWatcher::AddMemoryEvents(const std::string& key,
                                         const std::string& memory_events) {
  Watch w;
  w.key = key;
  w.counter = memory_events;
  w.kills = OomKills(w.counter);
  if (w.kills < 0) {
    return absl::NotFoundError(absl::StrCat("no ", memory_events));
  }
  absl::MutexLock lock(&mu_);
  w.wd = ::inotify_add_watch(inotify_.get(), memory_events.c_str(), IN_MODIFY);
  if (w.wd < 0) {
    return ErrnoStatus(errno, absl::StrCat("watch ", memory_events));
  }
  watches_[key] = std::move(w);
  return absl::OkStatus();
}

void OomWatcher::Remove(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(key);
  if (it == watches_.end()) {
    return;
  }
  Unwatch(it->second);
  watches_.erase(it);
}

void OomWatcher::Unwatch(const Watch& w) {
  if (w.event.valid()) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.event.get(), nullptr);
  }
  if (w.wd >= 0) {
    ::inotify_rm_watch(inotify_.get(), w.wd);
  }
}

bool OomWatcher::KillsRose(Watch& w, bool* gone) {
  int64_t kills = OomKills(w.counter);
  *gone = kills < 0;
  if (kills <= w.kills) {
    return false;
  }
  w.kills = kills;
  return true;
}

void OomWatcher::Signalled(int fd) {
  constexpr int kRechecks = 100;  // 5 s after the signal
  if (fd != inotify_.get()) {
    for (auto& [key, w] : watches_) {
      if (w.event.get() == fd) {
        uint64_t count = 0;
        (void)!::read(fd, &count, sizeof count);
        w.rechecks = kRechecks;
      }
    }
    return;
  }
  alignas(inotify_event) char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) {
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      for (auto& [key, w] : watches_) {
        if (w.wd == event->wd) {
          w.rechecks = kRechecks;  // IN_IGNORED too: the recheck finds the cgroup gone
        }
      }
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
}

void OomWatcher::Run() {
  constexpr int kRecheckIntervalMs = 50;
  epoll_event events[16];
  bool rechecking = false;
  while (true) {
    int n = ::epoll_wait(epoll_.get(), events, 16, rechecking ? kRecheckIntervalMs : -1);
    std::vector<std::string> ooms;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) {
        return;
      }
      for (int i = 0; i < n; ++i) {
        Signalled(events[i].data.fd);
      }
      rechecking = false;
      for (auto it = watches_.begin(); it != watches_.end();) {
        Watch& w = it->second;
        if (w.rechecks == 0) {
          ++it;
          continue;
        }
        bool gone = false;
        if (KillsRose(w, &gone)) {
          ooms.push_back(w.key);
          w.rechecks = 0;
        } else if (gone) {
          Unwatch(w);
          it = watches_.erase(it);
          continue;
        } else {
          --w.rechecks;
        }
        rechecking = rechecking || w.rechecks > 0;
        ++it;
      }
    }
    for (const std::string& key : ooms) {
      on_oom_(key);
    }
  }
}

}  // namespace berth::execd
