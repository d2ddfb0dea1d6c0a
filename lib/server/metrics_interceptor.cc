#include "lib/server/metrics_interceptor.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace berth::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(MetricsInterceptorFactory* factory, const char* method)
      : factory_(factory),
        method_(method != nullptr ? method : ""),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // grpc has no POST_SEND_STATUS hook on servers; PRE_SEND_STATUS is where the final status
    // is known, once per call, for every kind of call.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
      factory_->Record(method_, methods->GetSendStatus().error_code(), elapsed.count());
    }
    methods->Proceed();
  }

 private:
  MetricsInterceptorFactory* factory_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "Canceled";
    case grpc::StatusCode::UNKNOWN: return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT: return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND: return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS: return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED: return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FailedPrecondition";
    case grpc::StatusCode::ABORTED: return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE: return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED: return "Unimplemented";
    case grpc::StatusCode::INTERNAL: return "Internal";
    case grpc::StatusCode::UNAVAILABLE: return "Unavailable";
    case grpc::StatusCode::DATA_LOSS: return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED: return "Unauthenticated";
    default: return absl::StrCat("Code(", static_cast<int>(code), ")");
  }
}

MetricsInterceptorFactory::MetricsInterceptorFactory(prometheus::Registry& registry)
    : requests_(prometheus::BuildCounter()
                    .Name("berth_grpc_requests_total")
                    .Help("gRPC calls completed by the server, by method and status code.")
                    .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("berth_grpc_request_duration_seconds")
                    .Help("Time from a gRPC call's arrival to its status, by method.")
                    .Register(registry)) {}

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(this, info->method());
}

MetricsInterceptorFactory::MethodMetrics& MetricsInterceptorFactory::MetricsFor(
    const std::string& method) {
  auto it = methods_.find(method);
  if (it != methods_.end()) {
    return it->second;
  }
  if (methods_.size() >= kMaxMethods && method != "other") {
    return MetricsFor("other");
  }
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
  MethodMetrics metrics{method, &duration_.Add({{"method", method}}, kBuckets), {}};
  return methods_.emplace(method, std::move(metrics)).first->second;
}

void MetricsInterceptorFactory::Record(const std::string& method, grpc::StatusCode code,
                                       double seconds) {
  prometheus::Histogram* duration;
  prometheus::Counter* requests;
  {
    absl::MutexLock lock(&mu_);
    MethodMetrics& metrics = MetricsFor(method);
    duration = metrics.duration;
    auto it = metrics.requests.find(code);
    if (it == metrics.requests.end()) {
      it = metrics.requests
               .emplace(code, &requests_.Add({{"method", metrics.label},
                                              {"code", StatusCodeName(code)}}))
               .first;
    }
    requests = it->second;
  }
  duration->Observe(seconds);
  requests->Increment();
}

}  // namespace berth::server
