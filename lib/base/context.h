#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace berth {

// A caller's "stop": set once, seen by every piece of work done for it. A gRPC server's
// cancellation also polls its call (the client left, or the call's deadline passed), so work
// for a departed client stops at its next check. Thread-safe.
class Cancellation {
 public:
  Cancellation() = default;
  // `poll` is asked on each check until it says true; it must stay callable as long as this
  // object is checked (lib/server's ContextFrom: for the duration of the call).
  explicit Cancellation(std::function<bool()> poll) : poll_(std::move(poll)) {}
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool IsCancelled() const {
    if (cancelled_.load(std::memory_order_acquire)) {
      return true;
    }
    if (poll_ && poll_()) {
      cancelled_.store(true, std::memory_order_release);
      return true;
    }
    return false;
  }

 private:
  mutable std::atomic<bool> cancelled_{false};
  const std::function<bool()> poll_;
};

// What every call into a berth store carries besides its own arguments: the namespace the
// request is served in, the lease (if any) that protects what it creates, and how long the
// caller waits. gRPC servers fill it from the `containerd-namespace` and `containerd-lease`
// metadata headers and the call's deadline and cancellation (lib/server/request_context.h);
// gRPC clients send it back out the same way (lib/base/grpc_client.h), so a deadline set by the
// CLI bounds the daemon's work too. An empty `lease` means no lease.
//
// Long work (a copy, an unpack, a walk) checks Alive() between steps and returns its error:
// a caller that left or ran out of time gets its work stopped, and what was half done is
// cleaned up by the same path as any other error.
struct Context {
  std::string ns;
  std::string lease;
  absl::Time deadline = absl::InfiniteFuture();
  std::shared_ptr<const Cancellation> cancellation = nullptr;  // null: nobody cancels
  // The request came with no `containerd-namespace` header: a containerd (or another client)
  // using the daemon as a proxy plugin, which keeps its references in its own metadata and
  // collects through the proxy what that metadata does not name. contentd and snapshotd keep
  // what such a caller makes out of berth's collections, and refuse it what berth holds.
  bool proxy_consumer = false;

  // OkStatus while the caller still waits; Cancelled once it cancelled or left;
  // DeadlineExceeded once the deadline passed.
  absl::Status Alive() const {
    if (cancellation != nullptr && cancellation->IsCancelled()) {
      return absl::CancelledError("the caller cancelled the request or went away");
    }
    if (deadline != absl::InfiniteFuture() && absl::Now() >= deadline) {
      return absl::DeadlineExceededError("the request's deadline passed");
    }
    return absl::OkStatus();
  }

  // This context with a deadline no later than now + `timeout` (the earlier one wins).
  Context WithTimeout(absl::Duration timeout) const {
    Context copy = *this;
    copy.deadline = std::min(deadline, absl::Now() + timeout);
    return copy;
  }

  // This context for work that outlives the call it came from: same namespace, lease and
  // deadline, no link to the call's cancellation.
  Context Detached() const {
    Context copy = *this;
    copy.cancellation = nullptr;
    return copy;
  }
};

}  // namespace berth
