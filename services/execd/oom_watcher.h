#pragma once

// Out-of-memory kills in containers' memory cgroups, for /tasks/oom. cgroup v1 (a v1 memory
// controller, as on this hybrid host): an eventfd registered on memory.oom_control through
// cgroup.event_control. cgroup v2 (a unified host): an inotify watch on the cgroup's
// memory.events, as containerd's cgroups v2 package does. One thread epolls the eventfds and
// the one inotify descriptor; either also fires for other reasons (v1 when the cgroup is
// removed, v2 on any memory event), so a notification counts only when the file's `oom_kill`
// count rose. Thread-safe.

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
  // Watches a cgroup v2 memory.events file under `key` (Add's v2 half; a test's fixture file
  // works too, written in place).
  absl::Status AddMemoryEvents(const std::string& key, const std::string& memory_events);
  void Remove(const std::string& key);

 private:
  struct Watch {
    std::string key;
    std::string counter;  // the file with the `oom_kill N` line: memory.oom_control or .events
    int64_t kills = 0;
    UniqueFd event;  // v1: the registered eventfd
    int wd = -1;     // v2: the inotify watch
    // The kernel signals the eventfd when the cgroup hits its limit, before the OOM killer has
    // killed (and counted) anything: after a signal the count is read again every
    // kRecheckInterval, this many more times, until it rises.
    int rechecks = 0;
  };
  absl::Status AddV1(const std::string& key, const std::string& cgroup);
  void Run();
  // Marks the watches whose eventfd or inotify watch fired in `fd` for rechecking.
  void Signalled(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops `w`'s notifications (before it is erased).
  void Unwatch(const Watch& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads `w`'s kill count; true when it rose (and records it). False when the cgroup is gone.
  static bool KillsRose(Watch& w, bool* gone);

  std::function<void(const std::string&)> on_oom_;
  UniqueFd epoll_;
  UniqueFd wake_;
  UniqueFd inotify_;
  absl::Mutex mu_;
  std::map<std::string, Watch> watches_ ABSL_GUARDED_BY(mu_);  // by key
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace berth::execd
