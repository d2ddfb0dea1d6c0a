#pragma once

// Out-of-memory kills in containers' memory cgroups (cgroup v1: an eventfd registered on
// memory.oom_control through cgroup.event_control), for /tasks/oom. One thread epolls every
// registered eventfd; v1 also signals an eventfd when its cgroup is removed, so a
// notification counts only when memory.oom_control's `oom_kill` count rose. A host with only
// cgroup v2 gets no OOM events yet (Add says so). Thread-safe.

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/unique_fd.h"

namespace berth::execd {

class OomWatcher {
 public:
  // `on_oom(key)` runs on the watcher's thread for each OOM kill in a watched cgroup.
  explicit OomWatcher(std::function<void(const std::string& key)> on_oom);
  ~OomWatcher();
  OomWatcher(const OomWatcher&) = delete;
  OomWatcher& operator=(const OomWatcher&) = delete;

  // Watches the memory cgroup process `pid` is in, under `key`.
  absl::Status Add(const std::string& key, pid_t pid);
  void Remove(const std::string& key);

 private:
  struct Watch {
    std::string key;
    std::string oom_control;  // the cgroup's memory.oom_control
    int64_t kills = 0;
    UniqueFd event;
    // The kernel signals the eventfd when the cgroup hits its limit, before the OOM killer has
    // killed (and counted) anything: after a signal the count is read again every
    // kRecheckInterval, this many more times, until it rises.
    int rechecks = 0;
  };
  void Run();
  // Reads `w`'s kill count; true when it rose (and records it). False when the cgroup is gone.
  static bool KillsRose(Watch& w, bool* gone);

  std::function<void(const std::string&)> on_oom_;
  UniqueFd epoll_;
  UniqueFd wake_;
  absl::Mutex mu_;
  std::map<int, Watch> watches_ ABSL_GUARDED_BY(mu_);  // by eventfd
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace berth::execd
