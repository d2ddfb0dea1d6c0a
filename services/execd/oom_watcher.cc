#include "services/execd/oom_watcher.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"

namespace berth::execd {
namespace {

constexpr char kMemoryRoot[] = "/sys/fs/cgroup/memory";

// The `oom_kill N` count in memory.oom_control; -1 when the cgroup is gone.
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
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
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
  if (::access(absl::StrCat(kMemoryRoot, "/cgroup.event_control").c_str(), F_OK) != 0) {
    return absl::UnimplementedError(
        "no cgroup v1 memory controller: OOM events are not watched on this host");
  }
  BERTH_ASSIGN_OR_RETURN(std::string cgroups, ReadFile(absl::StrCat("/proc/", pid, "/cgroup")));
  std::string path;
  for (absl::string_view line : absl::StrSplit(cgroups, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() == 3) {
      for (absl::string_view controller : absl::StrSplit(f[1], ',')) {
        if (controller == "memory") {
          path = absl::StrCat(kMemoryRoot, f[2]);
        }
      }
    }
  }
  if (path.empty()) {
    return absl::NotFoundError(absl::StrCat("process ", pid, ": no memory cgroup"));
  }
  Watch w;
  w.key = key;
  w.oom_control = path + "/memory.oom_control";
  w.kills = OomKills(w.oom_control);
  w.event.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd control(::open(w.oom_control.c_str(), O_RDONLY | O_CLOEXEC));
  if (!w.event.valid() || !control.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", w.oom_control));
  }
  std::string registration = absl::StrCat(w.event.get(), " ", control.get());
  UniqueFd event_control(
      ::open((path + "/cgroup.event_control").c_str(), O_WRONLY | O_CLOEXEC));
  if (!event_control.valid() ||
      ::write(event_control.get(), registration.data(), registration.size()) < 0) {
    return ErrnoStatus(errno, absl::StrCat("register for OOM events in ", path));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = w.event.get();
  absl::MutexLock lock(&mu_);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.event.get(), &ev);
  int fd = w.event.get();
  watches_[fd] = std::move(w);
  return absl::OkStatus();
}

void OomWatcher::Remove(const std::string& key) {
  absl::MutexLock lock(&mu_);
  for (auto it = watches_.begin(); it != watches_.end(); ++it) {
    if (it->second.key == key) {
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->first, nullptr);
      watches_.erase(it);
      return;
    }
  }
}

bool OomWatcher::KillsRose(Watch& w, bool* gone) {
  int64_t kills = OomKills(w.oom_control);
  *gone = kills < 0;
  if (kills <= w.kills) {
    return false;
  }
  w.kills = kills;
  return true;
}

void OomWatcher::Run() {
  constexpr int kRecheckIntervalMs = 50;
  constexpr int kRechecks = 100;  // 5 s after the signal
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
        auto it = watches_.find(events[i].data.fd);
        if (it != watches_.end()) {
          uint64_t count = 0;
          (void)!::read(it->first, &count, sizeof count);
          it->second.rechecks = kRechecks;
        }
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
          ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->first, nullptr);
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
