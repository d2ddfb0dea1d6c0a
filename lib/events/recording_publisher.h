#pragma once

// A Publisher for tests: keeps every event it is given, in order, with its namespace and topic.
// Header-only; thread-safe.

#include <google/protobuf/message.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/events/publisher.h"

namespace berth::events {

class RecordingPublisher : public Publisher {
 public:
  struct Record {
    std::string ns;
    std::string topic;
    std::shared_ptr<const google::protobuf::Message> event;  // a copy of what was published
  };

  absl::Status Publish(absl::string_view ns, absl::string_view topic,
                       const google::protobuf::Message& event) override {
    std::shared_ptr<google::protobuf::Message> copy(event.New());
    copy->CopyFrom(event);
    absl::MutexLock lock(&mu_);
    records_.push_back({std::string(ns), std::string(topic), std::move(copy)});
    return absl::OkStatus();
  }

  std::vector<Record> records() {
    absl::MutexLock lock(&mu_);
    return records_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Record> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::events
