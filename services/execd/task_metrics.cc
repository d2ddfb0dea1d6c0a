#include "services/execd/task_metrics.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/cgroups/cgroup_stats.h"
#include "lib/filters/filter.h"

namespace berth::execd {
namespace {

// linux.cgroupsPath of the spec in `bundle`/config.json ("" when it names none).
absl::StatusOr<std::string> CgroupsPath(const std::string& bundle) {
  BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(bundle + "/config.json"));
  nlohmann::json spec = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (spec.is_discarded()) {
    return absl::InternalError(absl::StrCat(bundle, "/config.json: not JSON"));
  }
  const nlohmann::json* path = nullptr;
  if (auto lx = spec.find("linux"); lx != spec.end() && lx->is_object()) {
    if (auto p = lx->find("cgroupsPath"); p != lx->end() && p->is_string()) {
      path = &*p;
    }
  }
  return path != nullptr ? path->get<std::string>() : std::string();
}

}  // namespace

absl::Status CollectMetrics(const Context& ctx, TaskManager& tasks,
                            const std::vector<std::string>& filters,
                            ::containerd::services::tasks::v1::MetricsResponse* response) {
  BERTH_ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filters));
  // Only a matching task with no absolute cgroups path costs a call to its shim (its pid).
  for (const std::string& id : tasks.TaskIds(ctx)) {
    bool match = filter.Match([&](const std::vector<std::string>& field)
                                  -> std::optional<std::string> {
      if (field.size() == 1 && field[0] == "id") return id;
      if (field.size() == 1 && field[0] == "namespace") return ctx.ns;
      return std::nullopt;
    });
    if (!match) {
      continue;
    }
    absl::Time collected = absl::Now();
    absl::StatusOr<google::protobuf::Any> data = [&]() -> absl::StatusOr<google::protobuf::Any> {
      BERTH_ASSIGN_OR_RETURN(std::string path, CgroupsPath(tasks.BundleDir(ctx.ns, id)));
      pid_t pid = 0;
      if (!absl::StartsWith(path, "/")) {
        BERTH_ASSIGN_OR_RETURN(ProcessProto process, tasks.Get(ctx, id, ""));
        pid = static_cast<pid_t>(process.pid());
      }
      return cgroups::ContainerMetrics(path, pid);
    }();
    if (!data.ok()) {
      if (data.status().code() != absl::StatusCode::kNotFound) {
        BERTH_LOG(Warn) << "metrics of task " << ctx.ns << "/" << id << ": " << data.status();
      }
      continue;
    }
    ::containerd::types::Metric* metric = response->add_metrics();
    SetTimestamp(metric->mutable_timestamp(), collected);
    metric->set_id(id);
    *metric->mutable_data() = *std::move(data);
  }
  return absl::OkStatus();
}

}  // namespace berth::execd
