#pragma once

// A client for eventd's berth.events.v1.Events.Subscribe that survives eventd (or the bus)
// going away: it remembers the sequence of the last event it delivered and, when the stream
// breaks, subscribes again from the next one, so the handler sees every event once, in order.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "containerd/services/events/v1/events.pb.h"

namespace berth::events {

struct EventdSubscribeOptions {
  // containerd filter syntax; any one matching lets an event through. Empty: everything.
  std::vector<std::string> filters;
  // Where to start; neither: live events from now on.
  std::optional<uint64_t> start_sequence;
  std::optional<absl::Time> start_time;
  // The namespace header sent (eventd's Subscribe does not restrict by it; use a filter).
  std::string ns;
  // Reconnect after a broken stream (once the first subscription succeeded).
  bool resume = true;
  absl::Duration max_reconnect_wait = absl::Seconds(2);
  // Told about each reconnect attempt (for a CLI's stderr); may be empty.
  std::function<void(const absl::Status& why)> on_reconnect;
};

class EventdSubscriber {
 public:
  // `channel` reaches eventd; it is reused across reconnects (gRPC re-dials it).
  EventdSubscriber(std::shared_ptr<grpc::Channel> channel, EventdSubscribeOptions options);
  EventdSubscriber(const EventdSubscriber&) = delete;
  EventdSubscriber& operator=(const EventdSubscriber&) = delete;

  // Delivers events to `handler` (sequence, envelope) until it returns false, Cancel() is
  // called (both OK), or the subscription fails for good: the first attempt fails (e.g.
  // Unavailable: eventd is not there), or eventd rejects the request (InvalidArgument for a
  // bad filter). Once subscribed, a broken stream is resumed, waiting for eventd to come back
  // for as long as it takes. Call from one thread.
  absl::Status Run(const std::function<bool(uint64_t, const containerd::services::events::v1::Envelope&)>& handler);
  // Makes Run return soon. Thread-safe.
  void Cancel();

  // The last sequence delivered or skipped past; nullopt before the first position is known.
  // Thread-safe.
  std::optional<uint64_t> last_sequence() const;
  // How many times the stream was re-established. Thread-safe.
  int reconnects() const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  const EventdSubscribeOptions options_;

  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::optional<uint64_t> last_ ABSL_GUARDED_BY(mu_);
  int reconnects_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace berth::events
