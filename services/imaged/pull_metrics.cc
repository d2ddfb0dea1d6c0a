#include "services/imaged/pull_metrics.h"

#include <string>

namespace berth::imaged {

namespace {

prometheus::Histogram::BucketBoundaries DurationBuckets() {
  return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}

}  // namespace

PullMetrics::PullMetrics(prometheus::Registry& registry)
    : bytes_(prometheus::BuildCounter()
                 .Name("berth_imaged_pull_bytes_downloaded_total")
                 .Help("Bytes of blobs pulls downloaded from registries into contentd")
                 .Register(registry)
                 .Add({})),
      fetched_(prometheus::BuildCounter()
                   .Name("berth_imaged_pull_blobs_total")
                   .Help("Blobs pulls downloaded (fetched) or found in contentd (skipped)")
                   .Register(registry)
                   .Add({{"result", "fetched"}})),
      skipped_(prometheus::BuildCounter()
                   .Name("berth_imaged_pull_blobs_total")
                   .Help("Blobs pulls downloaded (fetched) or found in contentd (skipped)")
                   .Register(registry)
                   .Add({{"result", "skipped"}})),
      duration_ok_(prometheus::BuildHistogram()
                       .Name("berth_imaged_pull_duration_seconds")
                       .Help("Pulls by wall time and result")
                       .Register(registry)
                       .Add({{"result", "ok"}}, DurationBuckets())),
      duration_error_(prometheus::BuildHistogram()
                          .Name("berth_imaged_pull_duration_seconds")
                          .Help("Pulls by wall time and result")
                          .Register(registry)
                          .Add({{"result", "error"}}, DurationBuckets())),
      requests_(prometheus::BuildCounter()
                    .Name("berth_imaged_registry_requests_total")
                    .Help("HTTP requests to registries by host and status (error: no response)")
                    .Register(registry)),
      connections_(prometheus::BuildCounter()
                       .Name("berth_imaged_registry_connections_total")
                       .Help("Connections opened to registries by host and HTTP version")
                       .Register(registry)) {}

void PullMetrics::BlobCounter::Observe(const BlobEvent& event) {
  const std::string digest = event.digest.ToString();
  if (counted_.count(digest) != 0) {
    return;
  }
  switch (event.state) {
    case BlobEvent::State::kDownloading:
      start_.emplace(digest, event.offset);  // the first one: where the download started
      return;
    case BlobEvent::State::kExists:
      counted_.insert(digest);
      metrics_.skipped_.Increment();
      return;
    case BlobEvent::State::kVerifying:  // a layer, all of it received
    case BlobEvent::State::kDone: {     // a config or document stored
      counted_.insert(digest);
      auto start = start_.find(digest);
      int64_t from = start == start_.end() ? 0 : start->second;
      metrics_.fetched_.Increment();
      metrics_.bytes_.Increment(static_cast<double>(event.total - from));
      return;
    }
    case BlobEvent::State::kWaiting:
    case BlobEvent::State::kUnpacking:
    case BlobEvent::State::kUploading:  // push states: not a pull's
    case BlobEvent::State::kMounted:
      return;
  }
}

void PullMetrics::ObservePull(absl::Duration elapsed, bool ok) {
  (ok ? duration_ok_ : duration_error_).Observe(absl::ToDoubleSeconds(elapsed));
}

void PullMetrics::ObserveResponse(absl::string_view host, int status) {
  requests_
      .Add({{"host", std::string(host)},
            {"status", status > 0 ? std::to_string(status) : std::string("error")}})
      .Increment();
}

void PullMetrics::ObserveConnection(absl::string_view host, int http_version) {
  connections_.Add({{"host", std::string(host)}, {"http_version", std::to_string(http_version)}})
      .Increment();
}

}  // namespace berth::imaged
