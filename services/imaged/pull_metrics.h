#pragma once

// imaged's pull metrics on a prometheus registry (issue 10):
//   berth_imaged_pull_bytes_downloaded_total         bytes of blobs a pull downloaded and stored
//                                                    (a resumed layer: only what was fetched;
//                                                    documents contentd had are not counted)
//   berth_imaged_pull_blobs_total{result}            blobs a pull stored ("fetched") or found in
//                                                    contentd already ("skipped"), each once
//   berth_imaged_pull_duration_seconds{result}       pulls, "ok" or "error", by wall time
//   berth_imaged_registry_requests_total{host,status} HTTP requests to registries, by host and
//                                                    status code ("error": no response)
//   berth_imaged_registry_connections_total{host,http_version}  connections opened to
//                                                    registries ("1" for 1.x, "2", "3"): far
//                                                    fewer than requests while they are reused
// Thread-safe.

#include <map>
#include <set>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/digest.h"
#include "services/imaged/puller.h"

namespace berth::imaged {

class PullMetrics {
 public:
  // The families are registered on `registry`, which must outlive this.
  explicit PullMetrics(prometheus::Registry& registry);
  PullMetrics(const PullMetrics&) = delete;
  PullMetrics& operator=(const PullMetrics&) = delete;

  // Counts one pull's blobs from its progress events. One per pull; events in order, from one
  // thread at a time (as Puller::Pull calls its callback).
  class BlobCounter {
   public:
    explicit BlobCounter(PullMetrics& metrics) : metrics_(metrics) {}
    void Observe(const BlobEvent& event);

   private:
    PullMetrics& metrics_;
    std::map<std::string, int64_t> start_;  // digest -> first DOWNLOADING offset
    std::set<std::string> counted_;         // digests counted fetched or skipped
  };

  void ObservePull(absl::Duration elapsed, bool ok);
  // For RegistryClientOptions::on_response.
  void ObserveResponse(absl::string_view host, int status);
  // For RegistryClientOptions::on_connection.
  void ObserveConnection(absl::string_view host, int http_version);

 private:
  prometheus::Counter& bytes_;
  prometheus::Counter& fetched_;
  prometheus::Counter& skipped_;
  prometheus::Histogram& duration_ok_;
  prometheus::Histogram& duration_error_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& connections_;
};

}  // namespace berth::imaged
