// `berth stats [ID...] [--no-stream]`: docker's stats table (CPU %, MEM USAGE / LIMIT, MEM %,
// PIDS) from execd's Tasks.Metrics, refreshed every second until interrupted; --no-stream
// prints one table. CPU % needs two samples, so even one table takes a second.

#include "tools/berth/stats_command.h"

#include <unistd.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "containerd/cgroups/stats/v1/metrics.pb.h"
#include "containerd/cgroups/v2/stats/metrics.pb.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "tools/berth/commands.h"
#include "tools/berth/container_setup.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

namespace tasks = ::containerd::services::tasks::v1;
constexpr absl::Duration kInterval = absl::Seconds(1);

// Usage less the inactive page cache (docker's "usage" since 19.03), never below 0.
uint64_t LessCache(uint64_t usage, uint64_t inactive_file) {
  return inactive_file < usage ? usage - inactive_file : usage;
}

// One sample of every task `ids` names (all the namespace's when empty), in execd's order.
// With `require_all` a named container without a task is NotFound, else it is left out.
absl::StatusOr<std::vector<StatsSample>> Sample(Clients& clients,
                                                const std::vector<std::string>& ids,
                                                uint64_t host_memory, bool require_all) {
  tasks::MetricsRequest request;
  for (const std::string& id : ids) {
    request.add_filters("id==" + id);
  }
  tasks::MetricsResponse response;
  BERTH_RETURN_IF_ERROR(clients.TaskStatus(
      clients.tasks->Metrics(clients.TaskContext().get(), request, &response)));
  std::vector<StatsSample> samples;
  for (const auto& metric : response.metrics()) {
    BERTH_ASSIGN_OR_RETURN(StatsSample s, SampleOf(metric, host_memory));
    samples.push_back(std::move(s));
  }
  for (const std::string& id : require_all ? ids : std::vector<std::string>()) {
    bool found = false;
    for (const StatsSample& s : samples) {
      found = found || s.id == id;
    }
    if (!found) {
      return absl::NotFoundError(absl::StrCat("container ", id, ": no task to measure in execd"));
    }
  }
  return samples;
}

void Print(const std::vector<StatsSample>& now, const std::map<std::string, StatsSample>& before,
           bool json, bool stream) {
  Table table({"CONTAINER ID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"});
  nlohmann::json list = nlohmann::json::array();
  for (const StatsSample& s : now) {
    auto prev = before.find(s.id);
    double cpu = prev != before.end() ? CpuPercent(prev->second, s) : 0;
    table.AddRow({s.id, absl::StrFormat("%.2f%%", cpu),
                  absl::StrCat(BinarySize(s.memory_usage), " / ", BinarySize(s.memory_limit)),
                  absl::StrFormat("%.2f%%", MemoryPercent(s)), std::to_string(s.pids)});
    list.push_back({{"id", s.id},
                    {"cpu_percent", cpu},
                    {"memory_usage", s.memory_usage},
                    {"memory_limit", s.memory_limit},
                    {"memory_percent", MemoryPercent(s)},
                    {"pids", s.pids}});
  }
  if (json) {
    // Streaming: one line per refresh (JSON Lines); once: the array, indented.
    if (stream) {
      std::cout << list.dump() << std::endl;
    } else {
      PrintJson(std::cout, list);
    }
    return;
  }
  if (stream && ::isatty(STDOUT_FILENO)) {
    std::cout << "\033[2J\033[H";  // clear the screen, as docker does
  }
  table.Print(std::cout);
  if (stream) {
    std::cout << std::endl;
  }
}

absl::Status Stats(Session& session, const std::vector<std::string>& ids, bool no_stream) {
  Clients clients(session);
  const uint64_t host_memory = HostMemory();
  std::map<std::string, StatsSample> before;
  BERTH_ASSIGN_OR_RETURN(std::vector<StatsSample> first,
                         Sample(clients, ids, host_memory, /*require_all=*/true));
  for (StatsSample& s : first) {
    before[s.id] = std::move(s);
  }
  while (true) {
    absl::SleepFor(kInterval);
    // A named container that went away since drops out of the table.
    BERTH_ASSIGN_OR_RETURN(std::vector<StatsSample> shown,
                           Sample(clients, ids, host_memory, /*require_all=*/false));
    Print(shown, before, session.json(), !no_stream);
    if (no_stream) {
      return absl::OkStatus();
    }
    before.clear();
    for (StatsSample& s : shown) {
      before[s.id] = std::move(s);
    }
  }
}

}  // namespace

absl::StatusOr<StatsSample> SampleOf(const ::containerd::types::Metric& metric,
                                     uint64_t host_memory) {
  StatsSample s;
  s.id = metric.id();
  s.at = absl::FromUnixSeconds(metric.timestamp().seconds()) +
         absl::Nanoseconds(metric.timestamp().nanos());
  const std::string& type = metric.data().type_url();
  uint64_t limit = 0;
  if (type == "io.containerd.cgroups.v1.Metrics") {
    ::io::containerd::cgroups::v1::Metrics m;
    if (!m.ParseFromString(metric.data().value())) {
      return absl::InvalidArgumentError(absl::StrCat("metrics of ", s.id, ": malformed ", type));
    }
    s.cpu_ns = m.cpu().usage().total();
    s.memory_usage = LessCache(m.memory().usage().usage(), m.memory().total_inactive_file());
    limit = m.memory().usage().limit();
    s.pids = m.pids().current();
  } else if (type == "io.containerd.cgroups.v2.Metrics") {
    ::io::containerd::cgroups::v2::Metrics m;
    if (!m.ParseFromString(metric.data().value())) {
      return absl::InvalidArgumentError(absl::StrCat("metrics of ", s.id, ": malformed ", type));
    }
    s.cpu_ns = m.cpu().usage_usec() * 1000;
    s.memory_usage = LessCache(m.memory().usage(), m.memory().inactive_file());
    limit = m.memory().usage_limit();
    s.pids = m.pids().current();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics of ", s.id, ": unknown type \"", type, "\""));
  }
  s.memory_limit = limit == 0 || (host_memory > 0 && limit > host_memory) ? host_memory : limit;
  return s;
}

double CpuPercent(const StatsSample& before, const StatsSample& now) {
  absl::Duration wall = now.at - before.at;
  if (wall <= absl::ZeroDuration() || now.cpu_ns < before.cpu_ns) {
    return 0;
  }
  return static_cast<double>(now.cpu_ns - before.cpu_ns) / absl::ToDoubleNanoseconds(wall) * 100;
}

double MemoryPercent(const StatsSample& s) {
  return s.memory_limit == 0 ? 0
                             : static_cast<double>(s.memory_usage) / s.memory_limit * 100;
}

std::string BinarySize(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    v /= 1024;
    ++unit;
  }
  return absl::StrCat(absl::StrFormat("%.4g", v), kUnits[unit]);
}

uint64_t HostMemory() {
  absl::StatusOr<std::string> meminfo = ReadFile("/proc/meminfo");
  if (!meminfo.ok()) {
    return 0;
  }
  for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
    uint64_t kib = 0;
    if (absl::ConsumePrefix(&line, "MemTotal:") &&
        absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line), " kB"), &kib)) {
      return kib * 1024;
    }
  }
  return 0;
}

void RegisterStatsCommand(CLI::App& root, Runner& runner) {
  auto ids = std::make_shared<std::vector<std::string>>();
  auto no_stream = std::make_shared<bool>(false);
  CLI::App* stats = root.add_subcommand(
      "stats", "Containers' CPU %, memory and pids, refreshed every second (execd's Metrics)");
  stats->add_flag("--no-stream", *no_stream, "Print one table and exit");
  stats->add_option("CONTAINER", *ids, "Container ids (default: every running task)");
  stats->callback(runner.Wrap(
      [ids, no_stream](Session& session) { return Stats(session, *ids, *no_stream); }));
}

}  // namespace berth::cli
