#include "lib/events/eventd_publisher.h"


#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "lib/base/random.h"
#include "absl/time/clock.h"
#include "berth/events/v1/events.grpc.pb.h"
#include "lib/base/grpc_status.h"

namespace berth::events {
namespace {

namespace bpb = ::berth::events::v1;
namespace cpb = ::containerd::services::events::v1;

// "client-<16 hex digits>": a producer name no other publisher picks.
std::string RandomProducer() { return absl::StrCat("client-", RandomHex(8)); }

}  // namespace

EventdPublisher::EventdPublisher(std::shared_ptr<grpc::Channel> channel,
                                 EventdPublisherOptions options)
    : channel_(std::move(channel)),
      options_(std::move(options)),
      producer_(options_.producer.empty() ? RandomProducer() : options_.producer) {
  uint64_t first = std::max<uint64_t>(options_.first_sequence, 1);
  {
    absl::MutexLock lock(&mu_);
    queued_ = first - 1;
    acknowledged_ = first - 1;
  }
  sender_ = std::thread([this] { Run(); });
}

EventdPublisher::~EventdPublisher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (context_ != nullptr) {
      context_->TryCancel();
    }
  }
  sender_.join();
}

absl::StatusOr<uint64_t> EventdPublisher::Queue(absl::string_view topic,
                                                const google::protobuf::Message& event) {
  if (absl::Status st = ValidateTopic(topic); !st.ok()) {
    return st;
  }
  cpb::PublishRequest request;
  request.set_topic(std::string(topic));
  request.mutable_event()->set_type_url(TypeUrlFor(event));
  if (!event.SerializeToString(request.mutable_event()->mutable_value())) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", event.GetDescriptor()->full_name(), ": cannot serialize"));
  }
  absl::MutexLock lock(&mu_);
  if (!status_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("eventd publisher stopped: ", status_.message()));
  }
  pending_.push_back(std::move(request));
  return ++queued_;
}

absl::Status EventdPublisher::Publish(absl::string_view ns, absl::string_view topic,
                                      const google::protobuf::Message& event) {
  if (!ns.empty() && ns != options_.ns) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace \"", ns, "\": this publisher's calls are in \"", options_.ns, "\""));
  }
  absl::StatusOr<uint64_t> number = Queue(topic, event);
  if (!number.ok()) {
    return number.status();
  }
  if (!WaitForAcknowledged(*number, absl::InfiniteDuration())) {
    absl::Status st = status();
    return st.ok() ? absl::CancelledError("eventd publisher stopped") : st;
  }
  return absl::OkStatus();
}

bool EventdPublisher::WaitForAcknowledged(uint64_t number, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return acknowledged_ >= number || !status_.ok() || stop_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return acknowledged_ >= number;
}

uint64_t EventdPublisher::acknowledged() const {
  absl::MutexLock lock(&mu_);
  return acknowledged_;
}

absl::Status EventdPublisher::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

int EventdPublisher::reconnects() const {
  absl::MutexLock lock(&mu_);
  return reconnects_;
}

void EventdPublisher::Run() {
  absl::Duration backoff = absl::Milliseconds(50);
  bool wait_for_ready = false;  // the first call fails fast; later ones wait for eventd
  while (true) {
    uint64_t acked_before = 0;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || queued_ > acknowledged_;
      };
      mu_.Await(absl::Condition(&work));
      if (stop_) {
        return;
      }
      acked_before = acknowledged_;
    }
    grpc::Status status = Call(wait_for_ready);
    absl::MutexLock lock(&mu_);
    if (stop_) {
      return;
    }
    if (RetryCannotHelp(status.error_code())) {
      status_ = FromGrpcStatus(status);  // wakes the waiters; Queue refuses from now on
      return;
    }
    if (acknowledged_ > acked_before) {
      backoff = absl::Milliseconds(50);  // the call got somewhere
    }
    ++reconnects_;
    wait_for_ready = true;
    if (options_.on_reconnect) {
      options_.on_reconnect(status.ok() ? absl::UnavailableError("eventd ended the call")
                                        : FromGrpcStatus(status));
    }
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopped), backoff)) {
      return;
    }
    backoff = std::min(backoff * 2, options_.max_reconnect_wait);
  }
}

grpc::Status EventdPublisher::Call(bool wait_for_ready) {
  auto stub = bpb::Events::NewStub(channel_);
  grpc::ClientContext context;
  if (!options_.ns.empty()) {
    context.AddMetadata("containerd-namespace", options_.ns);
  }
  context.set_wait_for_ready(wait_for_ready);
  uint64_t base = 0;  // the number of this call's first event
  {
    absl::MutexLock lock(&mu_);
    if (stop_) {
      return grpc::Status::CANCELLED;
    }
    context_ = &context;
    base = acknowledged_ + 1;
  }
  std::unique_ptr<grpc::ClientReaderWriter<bpb::PublishRequest, bpb::PublishAck>> stream =
      stub->Publish(&context);
  bool ended = false;  // guarded by mu_: the acknowledgements stopped (the call is over)
  std::thread acks([&] {
    bpb::PublishAck ack;
    while (stream->Read(&ack)) {
      absl::MutexLock lock(&mu_);
      uint64_t stored = base + ack.through() - 1;
      while (acknowledged_ < stored && !pending_.empty()) {
        pending_.pop_front();
        ++acknowledged_;
      }
    }
    absl::MutexLock lock(&mu_);
    ended = true;
  });
  uint64_t next = base;  // the next number to send on this call
  bool first = true;
  while (true) {
    bpb::PublishRequest request;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || ended || next <= queued_;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_ || ended) {
        break;
      }
      // Acks only cover what was sent, so `next` is still in pending_.
      uint64_t last = std::min<uint64_t>(queued_, next + std::max(options_.max_batch, 1) - 1);
      for (uint64_t n = next; n <= last; ++n) {
        *request.add_events() = pending_[n - acknowledged_ - 1];
      }
      next = last + 1;
    }
    if (first) {
      request.set_producer(producer_);  // the call's first request names the numbering
      request.set_first_sequence(base);
      first = false;
    }
    if (!stream->Write(request)) {
      break;
    }
  }
  context.TryCancel();  // nothing is left to say: let the reader return
  acks.join();
  grpc::Status status = stream->Finish();
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
  return status;
}

}  // namespace berth::events
