// The cgroup readers against fixture hierarchies written here (the files as the kernel lays
// them out), and ContainerMetrics against this test process's own cgroup on the host.

#include "lib/cgroups/cgroup_stats.h"

#include <unistd.h>

#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/base/posix.h"
#include "lib/testing/testing.h"

namespace berth::cgroups {
namespace {

using ::berth::testing::TempDir;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

void Write(const std::string& dir, const std::string& name, const std::string& text) {
  ASSERT_TRUE(MakeDirs(dir, 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(absl::StrCat(dir, "/", name), text, 0644).ok()) << name;
}

TEST(CgroupStatsTest, ReadsAV2Cgroup) {
  TempDir tmp;
  std::string dir = tmp.Join("web");
  Write(dir, "cgroup.controllers", "cpu io memory pids hugetlb\n");
  Write(dir, "memory.current", "1585152\n");
  Write(dir, "memory.max", "67108864\n");
  Write(dir, "memory.swap.current", "0\n");
  Write(dir, "memory.swap.max", "max\n");
  Write(dir, "memory.stat",
        "anon 409600\nfile 1052672\nkernel_stack 32768\nslab 120000\nshmem 4096\n"
        "inactive_file 900000\npgfault 1234\npgmajfault 5\nworkingset_refault 7\n"
        "thp_collapse_alloc 2\nsome_future_key 99\n");
  Write(dir, "memory.events", "low 0\nhigh 1\nmax 3\noom 2\noom_kill 1\n");
  Write(dir, "cpu.stat",
        "usage_usec 52817\nuser_usec 30000\nsystem_usec 22817\nnr_periods 40\n"
        "nr_throttled 9\nthrottled_usec 4321\n");
  Write(dir, "pids.current", "3\n");
  Write(dir, "pids.max", "max\n");
  Write(dir, "io.stat",
        "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
        "  \n253:1 rbytes=10 wbytes=20 rios=3 wios=4\n");
  Write(dir, "hugetlb.2MB.current", "2097152\n");
  Write(dir, "hugetlb.2MB.max", "max\n");
  Write(dir, "hugetlb.2MB.rsvd.max", "max\n");

  absl::StatusOr<v2::Metrics> m = ReadV2(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->memory().usage(), 1585152u);
  EXPECT_EQ(m->memory().usage_limit(), 67108864u);
  EXPECT_EQ(m->memory().swap_usage(), 0u);
  EXPECT_EQ(m->memory().swap_limit(), kMax);
  EXPECT_EQ(m->memory().anon(), 409600u);
  EXPECT_EQ(m->memory().file(), 1052672u);
  EXPECT_EQ(m->memory().kernel_stack(), 32768u);
  EXPECT_EQ(m->memory().inactive_file(), 900000u);
  EXPECT_EQ(m->memory().pgfault(), 1234u);
  EXPECT_EQ(m->memory().pgmajfault(), 5u);
  EXPECT_EQ(m->memory().workingset_refault(), 7u);
  EXPECT_EQ(m->memory().thp_collapse_alloc(), 2u);
  EXPECT_EQ(m->memory_events().max(), 3u);
  EXPECT_EQ(m->memory_events().oom(), 2u);
  EXPECT_EQ(m->memory_events().oom_kill(), 1u);
  EXPECT_EQ(m->cpu().usage_usec(), 52817u);
  EXPECT_EQ(m->cpu().user_usec(), 30000u);
  EXPECT_EQ(m->cpu().system_usec(), 22817u);
  EXPECT_EQ(m->cpu().nr_periods(), 40u);
  EXPECT_EQ(m->cpu().nr_throttled(), 9u);
  EXPECT_EQ(m->cpu().throttled_usec(), 4321u);
  EXPECT_EQ(m->pids().current(), 3u);
  EXPECT_EQ(m->pids().limit(), kMax);
  ASSERT_EQ(m->io().usage_size(), 2);
  EXPECT_EQ(m->io().usage(0).major(), 8u);
  EXPECT_EQ(m->io().usage(0).minor(), 0u);
  EXPECT_EQ(m->io().usage(0).rbytes(), 4096u);
  EXPECT_EQ(m->io().usage(0).wbytes(), 8192u);
  EXPECT_EQ(m->io().usage(0).rios(), 1u);
  EXPECT_EQ(m->io().usage(0).wios(), 2u);
  EXPECT_EQ(m->io().usage(1).major(), 253u);
  EXPECT_EQ(m->io().usage(1).wios(), 4u);
  ASSERT_EQ(m->hugetlb_size(), 1);
  EXPECT_EQ(m->hugetlb(0).pagesize(), "2MB");
  EXPECT_EQ(m->hugetlb(0).current(), 2097152u);
  EXPECT_EQ(m->hugetlb(0).max(), kMax);
}

TEST(CgroupStatsTest, AV2CgroupWithoutControllerFilesReadsZero) {
  TempDir tmp;
  Write(tmp.Join("bare"), "cgroup.procs", "");
  absl::StatusOr<v2::Metrics> m = ReadV2(tmp.Join("bare"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->memory().usage(), 0u);
  EXPECT_EQ(m->pids().current(), 0u);
  EXPECT_FALSE(m->has_memory_events());
  EXPECT_EQ(ReadV2(tmp.Join("gone")).status().code(), absl::StatusCode::kNotFound);
}

TEST(CgroupStatsTest, ReadsAV1CgroupAcrossControllers) {
  TempDir tmp;
  std::string root = tmp.path();
  Write(root + "/pids/ns/web", "pids.current", "4\n");
  Write(root + "/pids/ns/web", "pids.max", "max\n");
  Write(root + "/cpuacct/ns/web", "cpuacct.usage", "123456789\n");
  Write(root + "/cpuacct/ns/web", "cpuacct.usage_percpu", "100000000 23456789 \n");
  Write(root + "/cpuacct/ns/web", "cpuacct.stat", "user 7\nsystem 3\n");
  Write(root + "/cpu/ns/web", "cpu.stat",
        "nr_periods 12\nnr_throttled 5\nthrottled_time 9876\n");
  std::string mem = root + "/memory/ns/web";
  Write(mem, "memory.stat",
        "cache 8192\nrss 40960\npgpgin 11\npgpgout 12\npgfault 13\npgmajfault 1\n"
        "hierarchical_memory_limit 67108864\nhierarchical_memsw_limit 134217728\n"
        "total_cache 8192\ntotal_rss 40960\ntotal_pgpgin 21\ntotal_pgmajfault 2\n"
        "total_inactive_file 4096\n");
  Write(mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  Write(mem, "memory.usage_in_bytes", "49152\n");
  Write(mem, "memory.limit_in_bytes", "67108864\n");
  Write(mem, "memory.max_usage_in_bytes", "99999\n");
  Write(mem, "memory.failcnt", "6\n");
  Write(mem, "memory.kmem.usage_in_bytes", "1000\n");
  Write(mem, "memory.kmem.tcp.limit_in_bytes", "9223372036854771712\n");
  std::string blkio = root + "/blkio/ns/web";
  Write(blkio, "blkio.io_serviced_recursive", "Total 0\n");
  Write(blkio, "blkio.throttle.io_serviced", "8:0 Read 3\n8:0 Write 4\nTotal 7\n");
  Write(blkio, "blkio.throttle.io_service_bytes", "8:0 Read 12288\n8:0 Write 16384\nTotal 1\n");
  std::string huge = root + "/hugetlb/ns/web";
  Write(huge, "hugetlb.2MB.usage_in_bytes", "4194304\n");
  Write(huge, "hugetlb.2MB.max_usage_in_bytes", "6291456\n");
  Write(huge, "hugetlb.2MB.failcnt", "1\n");
  Write(huge, "hugetlb.2MB.rsvd.usage_in_bytes", "0\n");

  absl::StatusOr<v1::Metrics> m = ReadV1(root, "/ns/web");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->pids().current(), 4u);
  EXPECT_EQ(m->pids().limit(), 0u);  // containerd's v1 reads an unlimited pids.max as 0
  EXPECT_EQ(m->cpu().usage().total(), 123456789u);
  ASSERT_EQ(m->cpu().usage().per_cpu_size(), 2);
  EXPECT_EQ(m->cpu().usage().per_cpu(1), 23456789u);
  const uint64_t tick_ns = 1000000000 / static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
  EXPECT_EQ(m->cpu().usage().user(), 7 * tick_ns);
  EXPECT_EQ(m->cpu().usage().kernel(), 3 * tick_ns);
  EXPECT_EQ(m->cpu().throttling().periods(), 12u);
  EXPECT_EQ(m->cpu().throttling().throttled_periods(), 5u);
  EXPECT_EQ(m->cpu().throttling().throttled_time(), 9876u);
  EXPECT_EQ(m->memory().cache(), 8192u);
  EXPECT_EQ(m->memory().rss(), 40960u);
  EXPECT_EQ(m->memory().pg_pg_in(), 11u);
  EXPECT_EQ(m->memory().pg_pg_out(), 12u);
  EXPECT_EQ(m->memory().pg_fault(), 13u);
  EXPECT_EQ(m->memory().pg_maj_fault(), 1u);
  EXPECT_EQ(m->memory().hierarchical_memory_limit(), 67108864u);
  EXPECT_EQ(m->memory().hierarchical_swap_limit(), 134217728u);
  EXPECT_EQ(m->memory().total_cache(), 8192u);
  EXPECT_EQ(m->memory().total_pg_pg_in(), 21u);
  EXPECT_EQ(m->memory().total_pg_maj_fault(), 2u);
  EXPECT_EQ(m->memory().total_inactive_file(), 4096u);
  EXPECT_EQ(m->memory().usage().usage(), 49152u);
  EXPECT_EQ(m->memory().usage().limit(), 67108864u);
  EXPECT_EQ(m->memory().usage().max(), 99999u);
  EXPECT_EQ(m->memory().usage().failcnt(), 6u);
  EXPECT_EQ(m->memory().swap().usage(), 0u);  // no memsw files: swap accounting is off
  EXPECT_EQ(m->memory().kernel().usage(), 1000u);
  EXPECT_EQ(m->memory().kernel_tcp().limit(), 9223372036854771712u);
  EXPECT_EQ(m->memory_oom_control().oom_kill(), 2u);
  // The recursive (CFQ) files hold only a total: the throttle counters stand in.
  ASSERT_EQ(m->blkio().io_serviced_recursive_size(), 2);
  EXPECT_EQ(m->blkio().io_serviced_recursive(0).op(), "Read");
  EXPECT_EQ(m->blkio().io_serviced_recursive(0).major(), 8u);
  EXPECT_EQ(m->blkio().io_serviced_recursive(0).value(), 3u);
  ASSERT_EQ(m->blkio().io_service_bytes_recursive_size(), 2);
  EXPECT_EQ(m->blkio().io_service_bytes_recursive(1).op(), "Write");
  EXPECT_EQ(m->blkio().io_service_bytes_recursive(1).value(), 16384u);
  ASSERT_EQ(m->hugetlb_size(), 1);
  EXPECT_EQ(m->hugetlb(0).pagesize(), "2MB");
  EXPECT_EQ(m->hugetlb(0).usage(), 4194304u);
  EXPECT_EQ(m->hugetlb(0).max(), 6291456u);
  EXPECT_EQ(m->hugetlb(0).failcnt(), 1u);

  EXPECT_EQ(ReadV1(root, "/ns/gone").status().code(), absl::StatusCode::kNotFound);
}

TEST(CgroupStatsTest, FindsAProcessCgroupPerController) {
  TempDir tmp;
  Write(tmp.Join("42"), "cgroup",
        "12:pids:/ns/web\n4:cpu,cpuacct:/ns/web-cpu\n1:name=systemd:/x\n0::/unified/web\n");
  absl::StatusOr<CgroupPaths> paths = ProcessCgroups(42, tmp.path());
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_EQ((*paths)["pids"], "/ns/web");
  EXPECT_EQ((*paths)["cpu"], "/ns/web-cpu");
  EXPECT_EQ((*paths)["cpuacct"], "/ns/web-cpu");
  EXPECT_EQ((*paths)[""], "/unified/web");
  EXPECT_EQ(paths->count("memory"), 0u);
  EXPECT_EQ(ProcessCgroups(43, tmp.path()).status().code(), absl::StatusCode::kNotFound);

  // Each controller read at its own path; one without an entry left out.
  Write(tmp.Join("root/pids/ns/web"), "pids.current", "2\n");
  Write(tmp.Join("root/cpuacct/ns/web-cpu"), "cpuacct.usage", "77\n");
  Write(tmp.Join("root/memory/ns/web"), "memory.usage_in_bytes", "4096\n");
  absl::StatusOr<v1::Metrics> m = ReadV1(tmp.Join("root"), *paths);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->pids().current(), 2u);
  EXPECT_EQ(m->cpu().usage().total(), 77u);
  EXPECT_FALSE(m->has_memory());
}

// The host's real cgroup of this process, found from its pid (no absolute cgroups path).
TEST(CgroupStatsTest, ContainerMetricsOfThisProcess) {
  absl::StatusOr<google::protobuf::Any> any = ContainerMetrics("", ::getpid());
  if (!any.ok() && any.status().code() == absl::StatusCode::kNotFound) {
    GTEST_SKIP() << "no cgroup hierarchy for this process here: " << any.status();
  }
  ASSERT_TRUE(any.ok()) << any.status();
  if (DetectMode() == Mode::kUnified) {
    ASSERT_EQ(any->type_url(), kV2MetricsType);
    v2::Metrics m;
    ASSERT_TRUE(m.ParseFromString(any->value()));
    EXPECT_GT(m.pids().current(), 0u);
  } else {
    ASSERT_EQ(any->type_url(), kV1MetricsType);
    v1::Metrics m;
    ASSERT_TRUE(m.ParseFromString(any->value()));
    EXPECT_GT(m.memory().usage().usage(), 0u);  // this test's own pages
    EXPECT_GT(m.memory().usage().limit(), 0u);
  }
  EXPECT_EQ(ContainerMetrics("relative/path", 0).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace berth::cgroups
