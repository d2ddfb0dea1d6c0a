#include "lib/events/eventd_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "berth/events/v1/events.grpc.pb.h"
#include "lib/base/grpc_status.h"

namespace berth::events {
namespace {

namespace bpb = ::berth::events::v1;

}  // namespace

EventdSubscriber::EventdSubscriber(std::shared_ptr<grpc::Channel> channel,
                                   EventdSubscribeOptions options)
    : channel_(std::move(channel)), options_(std::move(options)) {}

std::optional<uint64_t> EventdSubscriber::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

int EventdSubscriber::reconnects() const {
  absl::MutexLock lock(&mu_);
  return reconnects_;
}

void EventdSubscriber::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) {
    context_->TryCancel();
  }
}

absl::Status EventdSubscriber::Run(
    const std::function<bool(uint64_t, const containerd::services::events::v1::Envelope&)>&
        handler) {
  auto stub = bpb::Events::NewStub(channel_);
  bool subscribed_once = false;
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    bpb::SubscribeRequest request;
    for (const std::string& filter : options_.filters) {
      request.add_filters(filter);
    }
    std::optional<uint64_t> last = last_sequence();
    if (last.has_value()) {
      request.set_start_sequence(*last + 1);
    } else if (options_.start_sequence.has_value()) {
      request.set_start_sequence(*options_.start_sequence);
    } else if (options_.start_time.has_value()) {
      int64_t nanos = absl::ToUnixNanos(*options_.start_time);
      request.mutable_start_time()->set_seconds(nanos / 1000000000);
      request.mutable_start_time()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    }
    grpc::ClientContext context;
    if (!options_.ns.empty()) {
      context.AddMetadata("containerd-namespace", options_.ns);
    }
    // After a break, wait for eventd to be back instead of failing fast.
    context.set_wait_for_ready(subscribed_once);
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) {
        return absl::OkStatus();
      }
      context_ = &context;
    }
    std::unique_ptr<grpc::ClientReader<bpb::StreamedEvent>> reader =
        stub->Subscribe(&context, request);
    bpb::StreamedEvent item;
    bool stop = false;
    while (!stop && reader->Read(&item)) {
      subscribed_once = true;
      backoff = absl::Milliseconds(50);
      if (!item.has_envelope()) {  // the position marker
        absl::MutexLock lock(&mu_);
        if (!last_.has_value()) {
          last_ = item.sequence();
        }
        continue;
      }
      {
        absl::MutexLock lock(&mu_);
        if (last_.has_value() && item.sequence() <= *last_) {
          continue;  // already delivered
        }
        last_ = item.sequence();
      }
      if (!handler(item.sequence(), item.envelope())) {
        stop = true;
        context.TryCancel();
      }
    }
    grpc::Status status = reader->Finish();
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
      cancelled = cancelled_;
    }
    if (stop || cancelled) {
      return absl::OkStatus();
    }
    if (RetryCannotHelp(status.error_code()) || (!subscribed_once && !status.ok())) {
      return FromGrpcStatus(status);
    }
    if (!options_.resume) {
      return FromGrpcStatus(status);
    }
    absl::Status why =
        status.ok() ? absl::UnavailableError("eventd ended the stream") : FromGrpcStatus(status);
    if (options_.on_reconnect) {
      options_.on_reconnect(why);
    }
    {
      absl::MutexLock lock(&mu_);
      ++reconnects_;
      auto cancelled_cond = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return cancelled_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&cancelled_cond), backoff)) {
        return absl::OkStatus();
      }
    }
    backoff = std::min(backoff * 2, options_.max_reconnect_wait);
  }
}

}  // namespace berth::events
