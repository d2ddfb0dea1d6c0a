#include "lib/server/request_context.h"

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"

namespace berth::server {
namespace {

constexpr char kNamespaceHeader[] = "containerd-namespace";
constexpr char kLeaseHeader[] = "containerd-lease";

// The first value of `key`, empty when absent (containerd reads values[0] too).
std::string FirstValue(const grpc::ServerContextBase& server_context, const char* key) {
  const auto& metadata = server_context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) {
    return "";
  }
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

absl::StatusOr<Context> ContextFrom(const grpc::ServerContextBase& server_context,
                                    absl::string_view default_ns) {
  Context context;
  context.ns = FirstValue(server_context, kNamespaceHeader);
  if (context.ns.empty()) {
    // containerd treats an empty header as no header.
    context.ns = std::string(default_ns);
    context.proxy_consumer = true;
  }
  if (absl::Status st = ValidateNamespace(context.ns); !st.ok()) {
    // One shape for every reason: `namespace "<ns>" is invalid: <reason>`.
    std::string prefix = absl::StrCat("namespace \"", context.ns, "\" is ");
    absl::string_view reason = st.message();
    if (absl::ConsumePrefix(&reason, prefix)) {
      absl::ConsumePrefix(&reason, "invalid: ");
    }
    return absl::InvalidArgumentError(absl::StrCat(prefix, "invalid: ", reason));
  }
  // Not validated here: the lease store owns the rule for lease ids.
  context.lease = FirstValue(server_context, kLeaseHeader);
  std::chrono::system_clock::time_point deadline = server_context.deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    context.deadline = absl::FromChrono(deadline);
  }
  const grpc::ServerContextBase* call = &server_context;
  context.cancellation = std::make_shared<Cancellation>([call] { return call->IsCancelled(); });
  return context;
}

}  // namespace berth::server
