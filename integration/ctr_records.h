#pragma once

// What the tests of ctr against a record-keeping daemon share (ctr_images_test,
// ctr_containers_test): reading ctr's output, and the daemon's events read off NATS.
// Header-only; link PkgConfig::NATS and berth_proto.

#include <nats/nats.h>

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "containerd/services/events/v1/events.pb.h"

namespace berth::integration {

// ctr's output as trimmed, non-empty lines.
inline std::vector<std::string> Lines(const std::string& output) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    lines.emplace_back(absl::StripAsciiWhitespace(line));
  }
  return lines;
}

// `ctr images|containers label` prints the labels as k=v joined by ',' in Go's map order.
inline std::set<std::string> LabelSet(const std::string& output) {
  std::set<std::string> labels;
  for (absl::string_view label :
       absl::StrSplit(absl::StripAsciiWhitespace(output), ',', absl::SkipEmpty())) {
    labels.emplace(label);
  }
  return labels;
}

// A core NATS subscription on berth.events.<ns>.<topic root>.>, read synchronously.
class BusEvents {
 public:
  BusEvents(const std::string& url, absl::string_view ns, absl::string_view topic_root) {
    EXPECT_EQ(natsConnection_ConnectTo(&nc_, url.c_str()), NATS_OK);
    EXPECT_EQ(natsConnection_SubscribeSync(
                  &sub_, nc_, absl::StrCat("berth.events.", ns, ".", topic_root, ".>").c_str()),
              NATS_OK);
    EXPECT_EQ(natsConnection_Flush(nc_), NATS_OK);
  }
  ~BusEvents() {
    natsSubscription_Destroy(sub_);
    natsConnection_Destroy(nc_);
  }
  BusEvents(const BusEvents&) = delete;
  BusEvents& operator=(const BusEvents&) = delete;

  // The next event within 10 s (subject and envelope, and when asked its Nats-Msg-Id: the
  // outbox's name for one event, the same on a resend), or a failure.
  bool Next(std::string* subject, containerd::services::events::v1::Envelope* envelope,
            std::string* msg_id = nullptr) {
    natsMsg* msg = nullptr;
    natsStatus s = natsSubscription_NextMsg(&msg, sub_, 10000);
    if (s != NATS_OK) {
      ADD_FAILURE() << "no event within 10 s: " << natsStatus_GetText(s);
      return false;
    }
    *subject = natsMsg_GetSubject(msg);
    const char* id = nullptr;
    if (msg_id != nullptr && natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK) {
      *msg_id = id;
    }
    bool parsed = envelope->ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
    EXPECT_TRUE(parsed);
    return parsed;
  }

 private:
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

}  // namespace berth::integration
