// `berth stats`' figures from containerd.types.Metric samples of both cgroup versions.

#include "tools/berth/stats_command.h"

#include "containerd/cgroups/stats/v1/metrics.pb.h"
#include "containerd/cgroups/v2/stats/metrics.pb.h"
#include "gtest/gtest.h"

namespace berth::cli {
namespace {

constexpr uint64_t kHost = 8ull << 30;

::containerd::types::Metric MetricOf(const std::string& id, const std::string& type,
                                     const google::protobuf::Message& data, int64_t seconds) {
  ::containerd::types::Metric m;
  m.set_id(id);
  m.mutable_timestamp()->set_seconds(seconds);
  m.mutable_data()->set_type_url(type);
  data.SerializeToString(m.mutable_data()->mutable_value());
  return m;
}

TEST(StatsTest, V1SamplesGiveDockersFigures) {
  ::io::containerd::cgroups::v1::Metrics m;
  m.mutable_cpu()->mutable_usage()->set_total(1000000000);
  m.mutable_memory()->mutable_usage()->set_usage(48u << 20);
  m.mutable_memory()->set_total_inactive_file(16u << 20);
  m.mutable_memory()->mutable_usage()->set_limit(64u << 20);
  m.mutable_pids()->set_current(3);
  absl::StatusOr<StatsSample> before =
      SampleOf(MetricOf("web", "io.containerd.cgroups.v1.Metrics", m, 100), kHost);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->id, "web");
  EXPECT_EQ(before->memory_usage, 32u << 20);  // less the inactive page cache
  EXPECT_EQ(before->memory_limit, 64u << 20);
  EXPECT_EQ(before->pids, 3u);
  EXPECT_DOUBLE_EQ(MemoryPercent(*before), 50.0);

  m.mutable_cpu()->mutable_usage()->set_total(1500000000);  // half a CPU over one second
  absl::StatusOr<StatsSample> now =
      SampleOf(MetricOf("web", "io.containerd.cgroups.v1.Metrics", m, 101), kHost);
  ASSERT_TRUE(now.ok());
  EXPECT_DOUBLE_EQ(CpuPercent(*before, *now), 50.0);
  EXPECT_EQ(CpuPercent(*now, *before), 0.0);

  // No limit: v1's page-rounded 2^63 shows as the host's memory.
  m.mutable_memory()->mutable_usage()->set_limit(9223372036854771712u);
  now = SampleOf(MetricOf("web", "io.containerd.cgroups.v1.Metrics", m, 101), kHost);
  EXPECT_EQ(now->memory_limit, kHost);
}

TEST(StatsTest, V2SamplesAndUnknownData) {
  ::io::containerd::cgroups::v2::Metrics m;
  m.mutable_cpu()->set_usage_usec(2000000);
  m.mutable_memory()->set_usage(10u << 20);
  m.mutable_memory()->set_inactive_file(2u << 20);
  m.mutable_memory()->set_usage_limit(UINT64_MAX);
  m.mutable_pids()->set_current(7);
  absl::StatusOr<StatsSample> s =
      SampleOf(MetricOf("db", "io.containerd.cgroups.v2.Metrics", m, 5), kHost);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->cpu_ns, 2000000000u);
  EXPECT_EQ(s->memory_usage, 8u << 20);
  EXPECT_EQ(s->memory_limit, kHost);
  EXPECT_EQ(s->pids, 7u);

  absl::StatusOr<StatsSample> bad =
      SampleOf(MetricOf("db", "types.googleapis.com/other", m, 5), kHost);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatsTest, BinarySizes) {
  EXPECT_EQ(BinarySize(0), "0B");
  EXPECT_EQ(BinarySize(1536), "1.5KiB");
  EXPECT_EQ(BinarySize(64u << 20), "64MiB");
  EXPECT_EQ(BinarySize(1234567), "1.177MiB");
  EXPECT_GT(HostMemory(), 0u);
}

}  // namespace
}  // namespace berth::cli
