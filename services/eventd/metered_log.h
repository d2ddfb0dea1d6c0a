#pragma once

// An EventLog that counts what passes through another one, for eventd's /metrics:
//   berth_eventd_appends_total{result="ok"|"error"}  events eventd was asked to store (Publish,
//                                                   Forward, streaming Publish) by outcome
//   berth_eventd_append_duration_seconds             from an append to the stream's answer
//   berth_eventd_subscriptions                       subscriptions to the stream open now (one
//                                                   per Subscribe being served)
//   berth_eventd_subscription_events_total           events read from the stream for
//                                                   subscribers, before their filters
//   berth_eventd_nats_connected                      1 while connected to NATS (SetConnected)
// Events that daemons publish to NATS directly do not pass through eventd's appends; the
// stream's own counts are nats-server's.

#include <memory>

#include "services/eventd/event_log.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace berth::eventd {

class MeteredEventLog : public EventLog {
 public:
  // `inner` must outlive this object. The metrics live as long as the registry and every
  // append still in flight, so an append that settles late counts safely.
  MeteredEventLog(EventLog& inner, std::shared_ptr<prometheus::Registry> registry);
  ~MeteredEventLog() override;
  MeteredEventLog(const MeteredEventLog&) = delete;
  MeteredEventLog& operator=(const MeteredEventLog&) = delete;

  using EventLog::AppendAsync;
  void AppendAsync(const Envelope& envelope, const std::string& msg_id,
                   AppendDone done) override;
  absl::StatusOr<std::unique_ptr<EventSubscription>> Subscribe(StartPosition start) override;
  // Sets berth_eventd_nats_connected (whoever watches the connection calls it). Thread-safe.
  void SetConnected(bool connected);

  struct Metrics;

 private:
  EventLog& inner_;
  std::shared_ptr<Metrics> metrics_;
};

}  // namespace berth::eventd
