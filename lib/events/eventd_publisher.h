#pragma once

// A client for eventd's berth.events.v1.Events.Publish that loses nothing while it lives and
// stores nothing twice. Events wait in memory until eventd acknowledged them; when the call
// breaks (eventd restarting, the bus down) a new call resends every unacknowledged event as
// the same producer with the same numbers, so the stream drops the copies it already has (its
// duplicate window must cover the outage). Events queued while a request is being written go
// out together in the next one. Nothing is written to disk: events not yet acknowledged are
// lost when this process dies (see Publish); a daemon that needs them to survive publishes
// through NatsPublisher's outbox instead.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "containerd/services/events/v1/events.pb.h"
#include "lib/events/publisher.h"

namespace berth::events {

struct EventdPublisherOptions {
  // Who publishes (PublishRequest.producer, 1-64 of [A-Za-z0-9._-]). Empty: a random name for
  // this object's life. A fixed name must come with numbers this producer never used within
  // the stream's duplicate window (first_sequence), or new events are dropped as copies.
  std::string producer;
  uint64_t first_sequence = 1;  // the number of the first event this object queues
  // The containerd-namespace header: the events' namespace (empty: eventd's default).
  std::string ns;
  int max_batch = 256;  // events per request, at most
  absl::Duration max_reconnect_wait = absl::Seconds(2);
  // Told about each broken call before it is retried (for a CLI's stderr); may be empty.
  std::function<void(const absl::Status& why)> on_reconnect;
};

class EventdPublisher : public Publisher {
 public:
  // Starts the sender thread; `channel` reaches eventd and is reused across calls.
  EventdPublisher(std::shared_ptr<grpc::Channel> channel, EventdPublisherOptions options);
  // Stops the sender; events not yet acknowledged are dropped (WaitForAcknowledged first).
  ~EventdPublisher() override;
  EventdPublisher(const EventdPublisher&) = delete;
  EventdPublisher& operator=(const EventdPublisher&) = delete;

  // Queues `event` under `topic` and returns its number. InvalidArgument for a bad topic or an
  // event that does not serialize; FailedPrecondition once the publisher stopped for good
  // (status()). `ns` must be the options' namespace (or empty): a call has one namespace.
  // Thread-safe.
  absl::StatusOr<uint64_t> Queue(absl::string_view topic, const google::protobuf::Message& event);
  // Publisher: Queue, then wait (with no time limit) until eventd stored it. OK means it is
  // in eventd's stream. Until then it lives only in this object: if the process dies first
  // it is lost, as is everything Queued and not yet acknowledged. A daemon whose events must
  // survive its own death publishes through NatsPublisher's outbox instead.
  absl::Status Publish(absl::string_view ns, absl::string_view topic,
                       const google::protobuf::Message& event) override;

  // Waits until every event numbered up to `number` is stored (true), the publisher stopped
  // for good, or `timeout` passes (false). Thread-safe.
  bool WaitForAcknowledged(uint64_t number, absl::Duration timeout);
  // The highest number n such that every event up to n is stored (first_sequence - 1 at
  // first). Thread-safe.
  uint64_t acknowledged() const;
  // OK, or the error that stopped the publisher for good (eventd refused an event or the
  // producer: InvalidArgument and the like). Thread-safe.
  absl::Status status() const;
  // How many calls broke and were made again. Thread-safe.
  int reconnects() const;
  const std::string& producer() const { return producer_; }

 private:
  void Run();  // the sender thread
  // One call: sends what is queued from acknowledged_ + 1 on, until the call breaks or stop.
  grpc::Status Call(bool wait_for_ready);

  std::shared_ptr<grpc::Channel> channel_;
  const EventdPublisherOptions options_;
  const std::string producer_;

  mutable absl::Mutex mu_;
  // The events numbered acknowledged_ + 1 .. queued_, in order.
  std::deque<::containerd::services::events::v1::PublishRequest> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ ABSL_GUARDED_BY(mu_);        // the last number handed out
  uint64_t acknowledged_ ABSL_GUARDED_BY(mu_);  // every number up to it is stored
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  int reconnects_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // the call in progress
  std::thread sender_;
};

}  // namespace berth::events
