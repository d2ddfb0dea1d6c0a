#include "lib/cgroups/cgroup_stats.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"

namespace berth::cgroups {
namespace {

using KeyValues = std::map<std::string, uint64_t, std::less<>>;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The file's text, or "" when it cannot be read (a file this kernel does not have).
std::string ReadOrEmpty(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  return text.ok() ? *std::move(text) : std::string();
}

// A single-number file; `max_value` for "max"; 0 when missing or not a number.
uint64_t ReadUint(const std::string& path, uint64_t max_value = kMax) {
  std::string text = ReadOrEmpty(path);
  absl::string_view v = absl::StripAsciiWhitespace(text);
  uint64_t n = 0;
  if (v == "max") {
    return max_value;
  }
  return absl::SimpleAtoi(v, &n) ? n : 0;
}

// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
KeyValues ReadKeyValues(const std::string& path) {
  KeyValues kv;
  for (absl::string_view line : absl::StrSplit(ReadOrEmpty(path), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t n = 0;
    if (f.size() == 2 && absl::SimpleAtoi(f[1], &n)) {
      kv.emplace(std::string(f[0]), n);
    }
  }
  return kv;
}

// Sets each uint64 field of `m` from the key of its name (or of `renames[name]`), as
// containerd's readers map the kernel's keys onto these messages.
void Fill(const KeyValues& kv, google::protobuf::Message& m,
          const std::map<std::string, std::string>& renames = {}) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated() || f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_UINT64) {
      continue;
    }
    auto rename = renames.find(f->name());
    auto it = kv.find(rename == renames.end() ? f->name() : rename->second);
    if (it != kv.end()) {
      r->SetUInt64(&m, f, it->second);
    }
  }
}

// The names of files in `dir` (none when it cannot be listed).
std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  return names;
}

// "hugetlb.<size>.<suffix>" -> <size>; empty when `name` is not of that form.
std::string HugePageSize(absl::string_view name, absl::string_view suffix) {
  if (!absl::ConsumePrefix(&name, "hugetlb.") || !absl::ConsumeSuffix(&name, suffix) ||
      !absl::ConsumeSuffix(&name, ".") || name.empty()) {
    return "";
  }
  return std::string(name);
}

// Block device names by major:minor, from /proc/partitions (as containerd names blkio entries).
std::map<std::pair<uint64_t, uint64_t>, std::string> BlockDevices() {
  std::map<std::pair<uint64_t, uint64_t>, std::string> devices;
  for (absl::string_view line :
       absl::StrSplit(ReadOrEmpty("/proc/partitions"), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t major = 0, minor = 0;
    if (f.size() == 4 && absl::SimpleAtoi(f[0], &major) && absl::SimpleAtoi(f[1], &minor)) {
      devices[{major, minor}] = absl::StrCat("/dev/", f[3]);
    }
  }
  return devices;
}

// blkio.<name>: "major:minor [op] value" lines; the "Total" line skipped.
void ReadBlkioEntries(const std::string& dir, const std::string& name,
                      const std::map<std::pair<uint64_t, uint64_t>, std::string>& devices,
                      google::protobuf::RepeatedPtrField<v1::BlkIOEntry>* out) {
  for (absl::string_view line :
       absl::StrSplit(ReadOrEmpty(absl::StrCat(dir, "/blkio.", name)), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" :"),
                                                      absl::SkipEmpty());
    uint64_t major = 0, minor = 0, value = 0;
    if (f.size() < 3 || !absl::SimpleAtoi(f[0], &major) || !absl::SimpleAtoi(f[1], &minor) ||
        !absl::SimpleAtoi(f.back(), &value)) {
      continue;
    }
    v1::BlkIOEntry* e = out->Add();
    e->set_major(major);
    e->set_minor(minor);
    e->set_value(value);
    if (f.size() == 4) {
      e->set_op(std::string(f[2]));
    }
    auto dev = devices.find({major, minor});
    if (dev != devices.end()) {
      e->set_device(dev->second);
    }
  }
}

void ReadV1Memory(const std::string& dir, v1::Metrics& m) {
  v1::MemoryStat* mem = m.mutable_memory();
  Fill(ReadKeyValues(dir + "/memory.stat"), *mem,
       {{"pg_pg_in", "pgpgin"},
        {"pg_pg_out", "pgpgout"},
        {"pg_fault", "pgfault"},
        {"pg_maj_fault", "pgmajfault"},
        {"hierarchical_swap_limit", "hierarchical_memsw_limit"},
        {"total_pg_pg_in", "total_pgpgin"},
        {"total_pg_pg_out", "total_pgpgout"},
        {"total_pg_fault", "total_pgfault"},
        {"total_pg_maj_fault", "total_pgmajfault"}});
  Fill(ReadKeyValues(dir + "/memory.oom_control"), *m.mutable_memory_oom_control());
  const std::pair<const char*, v1::MemoryEntry*> modules[] = {
      {"memory.", mem->mutable_usage()},
      {"memory.memsw.", mem->mutable_swap()},
      {"memory.kmem.", mem->mutable_kernel()},
      {"memory.kmem.tcp.", mem->mutable_kernel_tcp()}};
  for (const auto& [prefix, entry] : modules) {
    std::string base = absl::StrCat(dir, "/", prefix);
    entry->set_usage(ReadUint(base + "usage_in_bytes"));
    entry->set_max(ReadUint(base + "max_usage_in_bytes"));
    entry->set_failcnt(ReadUint(base + "failcnt"));
    entry->set_limit(ReadUint(base + "limit_in_bytes"));
  }
}

void ReadV1Cpu(const std::string& cpu_dir, const std::string& cpuacct_dir, v1::Metrics& m) {
  v1::CPUStat* cpu = m.mutable_cpu();
  if (!cpuacct_dir.empty()) {
    v1::CPUUsage* usage = cpu->mutable_usage();
    usage->set_total(ReadUint(cpuacct_dir + "/cpuacct.usage"));
    for (absl::string_view v : absl::StrSplit(ReadOrEmpty(cpuacct_dir + "/cpuacct.usage_percpu"),
                                              absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
      uint64_t n = 0;
      if (absl::SimpleAtoi(v, &n)) {
        usage->add_per_cpu(n);
      }
    }
    // cpuacct.stat counts USER_HZ ticks; containerd reports nanoseconds.
    KeyValues ticks = ReadKeyValues(cpuacct_dir + "/cpuacct.stat");
    const uint64_t hz = static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
    usage->set_user(ticks["user"] * 1000000000 / hz);
    usage->set_kernel(ticks["system"] * 1000000000 / hz);
  }
  if (!cpu_dir.empty()) {
    Fill(ReadKeyValues(cpu_dir + "/cpu.stat"), *cpu->mutable_throttling(),
         {{"periods", "nr_periods"},
          {"throttled_periods", "nr_throttled"},
          {"throttled_time", "throttled_time"}});
  }
}

void ReadV1Blkio(const std::string& dir, v1::Metrics& m) {
  v1::BlkIOStat* blkio = m.mutable_blkio();
  auto devices = BlockDevices();
  if (::access((dir + "/blkio.io_serviced_recursive").c_str(), F_OK) == 0) {
    ReadBlkioEntries(dir, "sectors_recursive", devices, blkio->mutable_sectors_recursive());
    ReadBlkioEntries(dir, "io_service_bytes_recursive", devices,
                     blkio->mutable_io_service_bytes_recursive());
    ReadBlkioEntries(dir, "io_serviced_recursive", devices,
                     blkio->mutable_io_serviced_recursive());
    ReadBlkioEntries(dir, "io_queued_recursive", devices, blkio->mutable_io_queued_recursive());
    ReadBlkioEntries(dir, "io_service_time_recursive", devices,
                     blkio->mutable_io_service_time_recursive());
    ReadBlkioEntries(dir, "io_wait_time_recursive", devices,
                     blkio->mutable_io_wait_time_recursive());
    ReadBlkioEntries(dir, "io_merged_recursive", devices, blkio->mutable_io_merged_recursive());
    ReadBlkioEntries(dir, "time_recursive", devices, blkio->mutable_io_time_recursive());
    if (blkio->ByteSizeLong() > 0) {
      return;
    }
  }
  // Without CFQ on the cgroup's devices the recursive files are empty: the throttle counters.
  ReadBlkioEntries(dir, "throttle.io_serviced", devices, blkio->mutable_io_serviced_recursive());
  ReadBlkioEntries(dir, "throttle.io_service_bytes", devices,
                   blkio->mutable_io_service_bytes_recursive());
}

void ReadV1Hugetlb(const std::string& dir, v1::Metrics& m) {
  for (const std::string& name : FileNames(dir)) {
    std::string size = HugePageSize(name, "usage_in_bytes");
    if (size.empty() || size.find('.') != std::string::npos) {
      continue;  // not a usage file, or hugetlb.2MB.rsvd.usage_in_bytes and the like
    }
    std::string base = absl::StrCat(dir, "/hugetlb.", size, ".");
    v1::HugetlbStat* h = m.add_hugetlb();
    h->set_pagesize(size);
    h->set_usage(ReadUint(base + "usage_in_bytes"));
    h->set_max(ReadUint(base + "max_usage_in_bytes"));
    h->set_failcnt(ReadUint(base + "failcnt"));
  }
}

}  // namespace

Mode DetectMode(const std::string& root) {
  struct statfs fs;
  if (::statfs(root.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) {
    return Mode::kUnified;
  }
  if (::statfs((root + "/unified").c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) {
    return Mode::kHybrid;
  }
  return Mode::kLegacy;
}

absl::StatusOr<v1::Metrics> ReadV1(const std::string& root, const std::string& path) {
  CgroupPaths paths;
  for (const char* controller : {"pids", "cpu", "cpuacct", "memory", "blkio", "hugetlb"}) {
    paths[controller] = path;
  }
  return ReadV1(root, paths);
}

absl::StatusOr<v1::Metrics> ReadV1(const std::string& root, const CgroupPaths& paths) {
  // The controller's directory for the cgroup; "" when not mounted or without it.
  auto dir_of = [&](const char* controller) {
    auto path = paths.find(controller);
    if (path == paths.end()) {
      return std::string();
    }
    std::string dir = absl::StrCat(root, "/", controller, path->second);
    return IsDir(dir) ? dir : std::string();
  };
  v1::Metrics m;
  bool found = false;
  if (std::string dir = dir_of("pids"); !dir.empty()) {
    found = true;
    m.mutable_pids()->set_current(ReadUint(dir + "/pids.current"));
    m.mutable_pids()->set_limit(ReadUint(dir + "/pids.max", 0));
  }
  std::string cpu = dir_of("cpu"), cpuacct = dir_of("cpuacct");
  if (!cpu.empty() || !cpuacct.empty()) {
    found = true;
    ReadV1Cpu(cpu, cpuacct, m);
  }
  if (std::string dir = dir_of("memory"); !dir.empty()) {
    found = true;
    ReadV1Memory(dir, m);
  }
  if (std::string dir = dir_of("blkio"); !dir.empty()) {
    found = true;
    ReadV1Blkio(dir, m);
  }
  if (std::string dir = dir_of("hugetlb"); !dir.empty()) {
    found = true;
    ReadV1Hugetlb(dir, m);
  }
  if (!found) {
    auto memory = paths.find("memory");
    return absl::NotFoundError(
        absl::StrCat("cgroup ", memory != paths.end() ? memory->second : std::string("?"),
                     ": in no cgroup v1 controller under ", root));
  }
  return m;
}

absl::StatusOr<v2::Metrics> ReadV2(const std::string& dir) {
  if (!IsDir(dir)) {
    return absl::NotFoundError(absl::StrCat("cgroup ", dir, ": no such directory"));
  }
  v2::Metrics m;
  m.mutable_pids()->set_current(ReadUint(dir + "/pids.current"));
  m.mutable_pids()->set_limit(ReadUint(dir + "/pids.max"));
  Fill(ReadKeyValues(dir + "/cpu.stat"), *m.mutable_cpu());
  v2::MemoryStat* mem = m.mutable_memory();
  Fill(ReadKeyValues(dir + "/memory.stat"), *mem);
  mem->set_usage(ReadUint(dir + "/memory.current"));
  mem->set_usage_limit(ReadUint(dir + "/memory.max"));
  mem->set_swap_usage(ReadUint(dir + "/memory.swap.current"));
  mem->set_swap_limit(ReadUint(dir + "/memory.swap.max"));
  if (KeyValues events = ReadKeyValues(dir + "/memory.events"); !events.empty()) {
    Fill(events, *m.mutable_memory_events());
  }
  v2::IOStat* io = m.mutable_io();
  for (absl::string_view line :
       absl::StrSplit(ReadOrEmpty(dir + "/io.stat"), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.empty()) {
      continue;
    }
    std::vector<absl::string_view> dev = absl::StrSplit(f[0], ':');
    uint64_t major = 0, minor = 0;
    if (dev.size() != 2 || !absl::SimpleAtoi(dev[0], &major) ||
        !absl::SimpleAtoi(dev[1], &minor)) {
      continue;
    }
    KeyValues kv;
    for (size_t i = 1; i < f.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(f[i], '=');
      uint64_t n = 0;
      if (absl::SimpleAtoi(p.second, &n)) {
        kv.emplace(std::string(p.first), n);
      }
    }
    v2::IOEntry* e = io->add_usage();
    e->set_major(major);
    e->set_minor(minor);
    Fill(kv, *e);
  }
  std::map<std::string, v2::HugeTlbStat> huge;
  for (const std::string& name : FileNames(dir)) {
    for (const char* suffix : {"current", "max"}) {
      std::string size = HugePageSize(name, suffix);
      if (size.empty() || size.find('.') != std::string::npos) {
        continue;  // hugetlb.2MB.rsvd.max and the like
      }
      v2::HugeTlbStat& h = huge[size];
      h.set_pagesize(size);
      uint64_t v = ReadUint(absl::StrCat(dir, "/", name));
      if (absl::string_view(suffix) == "max") {
        h.set_max(v);
      } else {
        h.set_current(v);
      }
    }
  }
  for (auto& [size, h] : huge) {
    *m.add_hugetlb() = std::move(h);
  }
  return m;
}

absl::StatusOr<CgroupPaths> ProcessCgroups(pid_t pid, const std::string& proc) {
  BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat(proc, "/", pid, "/cgroup")));
  CgroupPaths paths;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) {
      continue;
    }
    if (f[0] == "0" && f[1].empty()) {
      paths[""] = std::string(f[2]);
    }
    for (absl::string_view controller : absl::StrSplit(f[1], ',', absl::SkipEmpty())) {
      paths[std::string(controller)] = std::string(f[2]);
    }
  }
  return paths;
}

absl::StatusOr<google::protobuf::Any> ContainerMetrics(const std::string& cgroups_path,
                                                       pid_t pid, const std::string& root) {
  const bool unified = DetectMode(root) == Mode::kUnified;
  const bool absolute = absl::StartsWith(cgroups_path, "/");
  CgroupPaths paths;
  if (!absolute && pid <= 0) {
    return absl::NotFoundError(absl::StrCat("cgroup path \"", cgroups_path,
                                            "\" is not absolute and the task has no process"));
  }
  if (!absolute) {
    BERTH_ASSIGN_OR_RETURN(paths, ProcessCgroups(pid));
  }
  google::protobuf::Any any;
  if (unified) {
    std::string path = cgroups_path;
    if (!absolute) {
      auto it = paths.find("");
      if (it == paths.end()) {
        return absl::NotFoundError(absl::StrCat("process ", pid, ": no cgroup v2 line"));
      }
      path = it->second;
    }
    BERTH_ASSIGN_OR_RETURN(v2::Metrics m, ReadV2(root + path));
    any.set_type_url(kV2MetricsType);
    m.SerializeToString(any.mutable_value());
  } else {
    BERTH_ASSIGN_OR_RETURN(v1::Metrics m,
                           absolute ? ReadV1(root, cgroups_path) : ReadV1(root, paths));
    any.set_type_url(kV1MetricsType);
    m.SerializeToString(any.mutable_value());
  }
  return any;
}

}  // namespace berth::cgroups
