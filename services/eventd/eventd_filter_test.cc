// eventd's containerd filters over envelopes (envelope_filter.h): every operator, presence,
// nested messages and map keys, as containerd's exchange adapts them.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "containerd/events/container.pb.h"
#include "containerd/events/content.pb.h"
#include "lib/events/publisher.h"
#include "services/eventd/envelope_filter.h"

namespace berth::eventd {
namespace {

using Envelope = ::containerd::services::events::v1::Envelope;

Envelope Wrap(const std::string& ns, const std::string& topic,
              const google::protobuf::Message& event) {
  Envelope envelope;
  envelope.set_namespace_(ns);
  envelope.set_topic(topic);
  envelope.mutable_event()->set_type_url(events::TypeUrlFor(event));
  event.SerializeToString(envelope.mutable_event()->mutable_value());
  return envelope;
}

Envelope ContentDelete(const std::string& ns, const std::string& digest) {
  containerd::events::ContentDelete del;
  del.set_digest(digest);
  return Wrap(ns, "/content/delete", del);
}

Envelope ContainerCreate(const std::string& id, const std::string& runtime) {
  containerd::events::ContainerCreate create;
  create.set_id(id);
  if (!runtime.empty()) {
    create.mutable_runtime()->set_name(runtime);
  }
  return Wrap("default", "/containers/create", create);
}

Envelope ContainerUpdate(const std::string& id, const std::string& key,
                         const std::string& value) {
  containerd::events::ContainerUpdate update;
  update.set_id(id);
  (*update.mutable_labels())[key] = value;
  return Wrap("default", "/containers/update", update);
}

bool Matches(const std::vector<std::string>& filters, const Envelope& envelope) {
  absl::StatusOr<filters::Filter> filter = ParseEventFilters(filters);
  EXPECT_TRUE(filter.ok()) << filter.status();
  return filter.ok() && MatchEnvelope(*filter, envelope);
}

TEST(EventdFilterTest, NoFilterMatchesEverything) {
  EXPECT_TRUE(Matches({}, ContentDelete("a", "sha256:1")));
}

TEST(EventdFilterTest, EqualsAndNotEqualsOnTopicAndNamespace) {
  Envelope e = ContentDelete("ns1", "sha256:1");
  EXPECT_TRUE(Matches({"namespace==ns1"}, e));
  EXPECT_FALSE(Matches({"namespace==ns2"}, e));
  EXPECT_FALSE(Matches({"namespace!=ns1"}, e));
  EXPECT_TRUE(Matches({"namespace!=ns2"}, e));
  EXPECT_TRUE(Matches({"topic!=\"/tasks/exit\""}, e));
  EXPECT_FALSE(Matches({"topic!=\"/content/delete\""}, e));
}

TEST(EventdFilterTest, NotEqualsOnAnAbsentFieldMatches) {
  // containerd: `!=` holds when the field is absent (its value is not the one named).
  EXPECT_TRUE(Matches({"event.digest!=sha256:1"}, ContainerCreate("c1", "")));
  EXPECT_TRUE(Matches({"event.nope!=x"}, ContentDelete("a", "sha256:1")));
}

TEST(EventdFilterTest, PresenceOfAField) {
  EXPECT_TRUE(Matches({"event.digest"}, ContentDelete("a", "sha256:1")));
  EXPECT_FALSE(Matches({"event.digest"}, ContentDelete("a", "")));  // empty is absent
  EXPECT_FALSE(Matches({"event.digest"}, ContainerCreate("c1", "")));
  EXPECT_TRUE(Matches({"namespace"}, ContentDelete("a", "sha256:1")));
  EXPECT_FALSE(Matches({"namespace"}, ContentDelete("", "sha256:1")));
}

TEST(EventdFilterTest, NestedMessageFields) {
  EXPECT_TRUE(Matches({"event.runtime.name==io.containerd.runc.v2"},
                      ContainerCreate("c1", "io.containerd.runc.v2")));
  EXPECT_FALSE(Matches({"event.runtime.name==io.containerd.runc.v2"},
                       ContainerCreate("c1", "crun")));
  EXPECT_TRUE(Matches({"event.runtime.name"}, ContainerCreate("c1", "crun")));
  EXPECT_FALSE(Matches({"event.runtime.name"}, ContainerCreate("c1", "")));  // no runtime
  EXPECT_TRUE(Matches({"event.runtime.name!=crun"}, ContainerCreate("c1", "")));
  // A path that goes on past a scalar names nothing.
  EXPECT_FALSE(Matches({"event.id.more"}, ContainerCreate("c1", "crun")));
}

TEST(EventdFilterTest, MapKeysTakeTheRestOfThePath) {
  Envelope e = ContainerUpdate("c1", "io.berth.role", "web");
  EXPECT_TRUE(Matches({"event.labels.io.berth.role==web"}, e));
  EXPECT_FALSE(Matches({"event.labels.io.berth.role==db"}, e));
  EXPECT_TRUE(Matches({"event.labels.io.berth.role"}, e));
  EXPECT_FALSE(Matches({"event.labels.other"}, e));
  EXPECT_TRUE(Matches({"event.labels.io.berth.role~=^w"}, e));
}

TEST(EventdFilterTest, CommasAreAndFiltersAreOr) {
  Envelope e = ContentDelete("ns1", "sha256:1");
  EXPECT_TRUE(Matches({"namespace==ns1,event.digest==sha256:1"}, e));
  EXPECT_FALSE(Matches({"namespace==ns1,event.digest==sha256:2"}, e));
  EXPECT_TRUE(Matches({"namespace==ns2", "event.digest==sha256:1"}, e));
  EXPECT_FALSE(Matches({"namespace==ns2", "event.digest==sha256:2"}, e));
}

TEST(EventdFilterTest, UnknownEventTypesHaveNoEventFields) {
  Envelope e = ContentDelete("ns1", "sha256:1");
  e.mutable_event()->set_type_url("example.com/Unknown");
  EXPECT_FALSE(Matches({"event.digest"}, e));
  EXPECT_TRUE(Matches({"topic==\"/content/delete\""}, e));
}

TEST(EventdFilterTest, MalformedFiltersAreInvalidArgument) {
  for (const char* text : {"topic==\"", "topic~=(", "==x", "topic==a,,"}) {
    absl::StatusOr<filters::Filter> filter = ParseEventFilters({text});
    EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

}  // namespace
}  // namespace berth::eventd
