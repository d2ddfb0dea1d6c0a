// OomWatcher's cgroup v2 half against a fixture memory.events (this hybrid host's unified
// hierarchy has no memory controller; the v1 half is driven by a real OOM in execd_tasks_test).
// The file is rewritten in place, as the kernel updates it: a change that leaves `oom_kill`
// where it was (an `oom` or `high` event) reports nothing, each rise reports once.

#include "services/execd/oom_watcher.h"

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lib/testing/testing.h"

namespace berth::execd {
namespace {

void WriteEvents(const std::string& path, int oom, int oom_kill, int high = 0) {
  std::ofstream out(path, std::ios::out | std::ios::trunc);  // in place: the watch stays
  out << "low 0\nhigh " << high << "\nmax " << oom << "\noom " << oom << "\noom_kill "
      << oom_kill << "\n";
}

class Reports {
 public:
  void Add(const std::string& key) {
    absl::MutexLock lock(&mu_);
    keys_.push_back(key);
  }
  // The keys reported once `n` have come (or after 20 s, however many came).
  std::vector<std::string> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&] { return keys_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(20));
    return keys_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> keys_ ABSL_GUARDED_BY(mu_);
};

TEST(OomWatcherTest, MemoryEventsReportEachRiseOfOomKillOnce) {
  testing::TempDir dir;
  const std::string a = dir.Join("a.events");
  const std::string b = dir.Join("b.events");
  WriteEvents(a, 0, 0);
  WriteEvents(b, 3, 2);  // kills before the watch began are not reported
  Reports reports;
  OomWatcher watcher([&](const std::string& key) { reports.Add(key); });
  ASSERT_TRUE(watcher.AddMemoryEvents("ns/a", a).ok());
  ASSERT_TRUE(watcher.AddMemoryEvents("ns/b", b).ok());

  WriteEvents(a, 1, 0, 7);  // the limit was hit, nothing killed
  WriteEvents(b, 3, 2, 1);  // another event, the count unchanged
  WriteEvents(a, 1, 1, 7);  // a kill
  EXPECT_EQ(reports.WaitFor(1), std::vector<std::string>{"ns/a"});
  WriteEvents(b, 4, 3);
  EXPECT_EQ(reports.WaitFor(2), (std::vector<std::string>{"ns/a", "ns/b"}));

  watcher.Remove("ns/a");
  WriteEvents(a, 2, 2);  // no longer watched
  WriteEvents(b, 5, 4);
  EXPECT_EQ(reports.WaitFor(3), (std::vector<std::string>{"ns/a", "ns/b", "ns/b"}));
}

TEST(OomWatcherTest, MissingMemoryEventsIsNotFound) {
  testing::TempDir dir;
  OomWatcher watcher([](const std::string&) {});
  absl::Status st = watcher.AddMemoryEvents("ns/x", dir.Join("absent/memory.events"));
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
}

}  // namespace
}  // namespace berth::execd
