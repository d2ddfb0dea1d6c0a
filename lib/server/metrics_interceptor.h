#pragma once

#include <map>
#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace berth::server {

// Records every gRPC call a server completes, unary or streaming, when it sends its status:
//   berth_grpc_requests_total{method="/pkg.Service/Method",code="OK"}   counter
//   berth_grpc_request_duration_seconds{method="..."}                   histogram, 100us..10s
// `code` uses gRPC's canonical names as Go spells them (OK, NotFound, InvalidArgument, ...),
// like go-grpc-prometheus. At most kMaxMethods distinct method labels are kept; further
// methods (only unknown paths a client made up can get there) are counted as method="other".
// Thread-safe; the registry must outlive the factory and every server using it.
class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  static constexpr size_t kMaxMethods = 512;

  explicit MetricsInterceptorFactory(prometheus::Registry& registry);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // Called by the interceptor once per call.
  void Record(const std::string& method, grpc::StatusCode code, double seconds);

 private:
  struct MethodMetrics {
    std::string label;  // the method, or "other" past kMaxMethods
    prometheus::Histogram* duration;
    std::map<grpc::StatusCode, prometheus::Counter*> requests;
  };
  MethodMetrics& MetricsFor(const std::string& method) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  absl::Mutex mu_;
  std::map<std::string, MethodMetrics> methods_ ABSL_GUARDED_BY(mu_);
};

// "OK", "NotFound", ... ("Code(<n>)" for a number gRPC does not define).
std::string StatusCodeName(grpc::StatusCode code);

}  // namespace berth::server
