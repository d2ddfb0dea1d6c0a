#include "services/eventd/metered_log.h"

#include <utility>

#include "absl/time/clock.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace berth::eventd {

struct MeteredEventLog::Metrics {
  explicit Metrics(std::shared_ptr<prometheus::Registry> r) : registry(std::move(r)) {
    auto& appends = prometheus::BuildCounter()
                        .Name("berth_eventd_appends_total")
                        .Help("Events eventd was asked to store (Publish, Forward, streaming "
                              "Publish), by outcome")
                        .Register(*registry);
    appended = &appends.Add({{"result", "ok"}});
    failed = &appends.Add({{"result", "error"}});
    duration = &prometheus::BuildHistogram()
                    .Name("berth_eventd_append_duration_seconds")
                    .Help("From an append to the event stream's answer")
                    .Register(*registry)
                    .Add({}, prometheus::Histogram::BucketBoundaries{
                                 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    subscriptions = &prometheus::BuildGauge()
                         .Name("berth_eventd_subscriptions")
                         .Help("Subscriptions to the event stream open now (one per Subscribe "
                               "being served)")
                         .Register(*registry)
                         .Add({});
    connected = &prometheus::BuildGauge()
                     .Name("berth_eventd_nats_connected")
                     .Help("1 while eventd is connected to NATS, 0 while it reconnects")
                     .Register(*registry)
                     .Add({});
    read = &prometheus::BuildCounter()
                .Name("berth_eventd_subscription_events_total")
                .Help("Events read from the event stream for subscribers, before their filters")
                .Register(*registry)
                .Add({});
  }

  std::shared_ptr<prometheus::Registry> registry;  // owns the families below
  prometheus::Counter* appended;
  prometheus::Counter* failed;
  prometheus::Histogram* duration;
  prometheus::Gauge* subscriptions;
  prometheus::Gauge* connected;
  prometheus::Counter* read;
};

namespace {

// A subscription that counts the events it hands out and is counted while it is open.
class MeteredSubscription : public EventSubscription {
 public:
  MeteredSubscription(std::unique_ptr<EventSubscription> inner,
                      std::shared_ptr<MeteredEventLog::Metrics> metrics)
      : inner_(std::move(inner)), metrics_(std::move(metrics)) {
    metrics_->subscriptions->Increment();
  }
  ~MeteredSubscription() override { metrics_->subscriptions->Decrement(); }

  absl::StatusOr<std::optional<StoredEvent>> Next(absl::Duration timeout) override {
    absl::StatusOr<std::optional<StoredEvent>> next = inner_->Next(timeout);
    if (next.ok() && next->has_value()) {
      metrics_->read->Increment();
    }
    return next;
  }
  int64_t buffered() const override { return inner_->buffered(); }
  std::optional<uint64_t> resume_after() const override { return inner_->resume_after(); }

 private:
  std::unique_ptr<EventSubscription> inner_;
  std::shared_ptr<MeteredEventLog::Metrics> metrics_;
};

}  // namespace

MeteredEventLog::MeteredEventLog(EventLog& inner, std::shared_ptr<prometheus::Registry> registry)
    : inner_(inner), metrics_(std::make_shared<Metrics>(std::move(registry))) {}

MeteredEventLog::~MeteredEventLog() = default;

void MeteredEventLog::AppendAsync(const Envelope& envelope, const std::string& msg_id,
                                  AppendDone done) {
  absl::Time start = absl::Now();
  inner_.AppendAsync(envelope, msg_id, [metrics = metrics_, start,
                                done = std::move(done)](absl::Status st) {
    metrics->duration->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    (st.ok() ? metrics->appended : metrics->failed)->Increment();
    done(std::move(st));
  });
}

void MeteredEventLog::SetConnected(bool connected) {
  metrics_->connected->Set(connected ? 1 : 0);
}

absl::StatusOr<std::unique_ptr<EventSubscription>> MeteredEventLog::Subscribe(
    StartPosition start) {
  absl::StatusOr<std::unique_ptr<EventSubscription>> sub = inner_.Subscribe(start);
  if (!sub.ok()) {
    return sub.status();
  }
  return std::unique_ptr<EventSubscription>(
      new MeteredSubscription(*std::move(sub), metrics_));
}

}  // namespace berth::eventd
