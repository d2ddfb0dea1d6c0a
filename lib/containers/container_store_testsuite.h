#pragma once

// The one conformance suite for containers::ContainerStore (after containerd's metadata
// container tests): execd's SqliteContainerStore runs it directly and GrpcContainerStore
// against the real Containers service, which proves the wire loses nothing (every Any byte for
// byte). It tests the contract in container_store.h, not error messages.
//
// Usage, in a test .cc that links gtest:
//   struct MyHarness {
//     MyHarness();                   // a fresh, empty store
//     containers::ContainerStore& store();
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mine, ContainerStoreTest, ::testing::Types<MyHarness>);

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/containers/container_store.h"

namespace berth::containers {

inline constexpr char kSpecType[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

template <typename Harness>
class ContainerStoreTest : public ::testing::Test {
 protected:
  ContainerStore& store() { return harness_.store(); }

  static Container Make(const std::string& id, const LabelMap& labels = {}) {
    Container c;
    c.id = id;
    c.labels = labels;
    c.image = "docker.io/library/alpine:3.19";
    c.runtime.name = "io.containerd.runc.v2";
    c.spec = Any{kSpecType, R"({"ociVersion":"1.1.0","process":{"args":["sh"]}})"};
    return c;
  }

  Container MustCreate(const Container& container, const Context* ctx = nullptr) {
    absl::StatusOr<Container> created = store().Create(ctx ? *ctx : ctx_, container);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Container{};
  }

  std::vector<std::string> Ids(const std::vector<std::string>& filters) {
    absl::StatusOr<std::vector<Container>> list = store().List(ctx_, filters);
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<std::string> ids;
    for (const Container& c : list.ok() ? *list : std::vector<Container>{}) {
      ids.push_back(c.id);
    }
    return ids;
  }

  static void ExpectSameRecord(const Container& a, const Container& b) {
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.labels, b.labels);
    EXPECT_EQ(a.image, b.image);
    EXPECT_EQ(a.runtime.name, b.runtime.name);
    EXPECT_EQ(a.runtime.options, b.runtime.options);
    EXPECT_EQ(a.spec, b.spec);
    EXPECT_EQ(a.snapshotter, b.snapshotter);
    EXPECT_EQ(a.snapshot_key, b.snapshot_key);
    EXPECT_EQ(a.extensions, b.extensions);
    EXPECT_EQ(a.created_at, b.created_at);
    EXPECT_EQ(a.updated_at, b.updated_at);
  }

  Harness harness_;
  const Context ctx_{"suite", ""};
};

TYPED_TEST_SUITE_P(ContainerStoreTest);

TYPED_TEST_P(ContainerStoreTest, CreateThenGetKeepsEveryFieldAsSent) {
  Container c = this->Make("web", {{"k", "v"}});
  c.runtime.options = Any{"type.example/Options", std::string("\x00\x01\xff bytes", 9)};
  c.spec.value = std::string("\x0a\x00\xfe not even json", 17);  // kept, never parsed
  c.snapshotter = "overlayfs";
  c.snapshot_key = "web-rootfs";
  c.extensions = {{"ext.a", Any{"type.example/A", "a"}}, {"ext.b", Any{"", "no type"}}};
  const absl::Time before = absl::Now();
  Container created = this->MustCreate(c);
  EXPECT_GE(created.created_at, before - absl::Seconds(1));
  EXPECT_EQ(created.updated_at, created.created_at);

  absl::StatusOr<Container> got = this->store().Get(this->ctx_, "web");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->spec, c.spec);
  EXPECT_EQ(got->runtime.options, c.runtime.options);
  EXPECT_EQ(got->extensions, c.extensions);
  this->ExpectSameRecord(*got, created);
}

TYPED_TEST_P(ContainerStoreTest, DuplicateCreateIsAlreadyExistsAndKeepsTheFirst) {
  Container first = this->MustCreate(this->Make("web", {{"n", "1"}}));
  absl::StatusOr<Container> again =
      this->store().Create(this->ctx_, this->Make("web", {{"n", "2"}}));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  absl::StatusOr<Container> got = this->store().Get(this->ctx_, "web");
  ASSERT_TRUE(got.ok()) << got.status();
  this->ExpectSameRecord(*got, first);
}

TYPED_TEST_P(ContainerStoreTest, BadCreateIsInvalidArgumentAndStoresNothing) {
  std::vector<Container> bad(8, this->Make("ok"));
  bad[0].id = "";
  bad[1].id = "bad/id";
  bad[2].id = "-leading-dash";
  bad[3].runtime.name = "";
  bad[4].spec = Any{};
  bad[5].snapshot_key = "key-without-snapshotter";
  bad[6].labels = {{"k", std::string(5000, 'v')}};
  bad[7].extensions = {{"", Any{"t", "v"}}};
  for (const Container& c : bad) {
    absl::StatusOr<Container> created = this->store().Create(this->ctx_, c);
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument)
        << "id \"" << c.id << "\": " << created.status();
  }
  EXPECT_THAT(this->Ids({}), ::testing::IsEmpty());
}

TYPED_TEST_P(ContainerStoreTest, UnknownIdsAreNotFound) {
  EXPECT_EQ(this->store().Get(this->ctx_, "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Delete(this->ctx_, "nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Update(this->ctx_, this->Make("nope"), {}).status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST_P(ContainerStoreTest, NamespacesAreSeparate) {
  const Context other{"other", ""};
  this->MustCreate(this->Make("same", {{"in", "suite"}}));
  this->MustCreate(this->Make("same", {{"in", "other"}}), &other);
  absl::StatusOr<Container> got = this->store().Get(other, "same");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->labels.at("in"), "other");
  ASSERT_TRUE(this->store().Delete(other, "same").ok());
  EXPECT_TRUE(this->store().Get(this->ctx_, "same").ok());
  EXPECT_EQ(this->store().Get(Context{"Bad Namespace!", ""}, "same").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(ContainerStoreTest, ListFiltersAsContainerd) {
  Container a = this->Make("a", {{"env", "prod"}});
  a.snapshotter = "overlayfs";
  a.snapshot_key = "a";
  Container b = this->Make("b", {{"env", "dev"}});
  b.image = "docker.io/library/busybox:1";
  b.runtime.name = "io.containerd.runsc.v1";
  Container c = this->Make("c");
  c.image = "";
  for (const Container& container : {c, a, b}) {
    this->MustCreate(container);
  }
  using ::testing::ElementsAre;
  EXPECT_THAT(this->Ids({}), ElementsAre("a", "b", "c"));
  EXPECT_THAT(this->Ids({"id==b"}), ElementsAre("b"));
  EXPECT_THAT(this->Ids({"image==docker.io/library/busybox:1"}), ElementsAre("b"));
  EXPECT_THAT(this->Ids({"image"}), ElementsAre("a", "b"));
  EXPECT_THAT(this->Ids({"runtime.name~=runc"}), ElementsAre("a", "c"));
  EXPECT_THAT(this->Ids({"snapshotter==overlayfs"}), ElementsAre("a"));
  EXPECT_THAT(this->Ids({"labels.env==prod"}), ElementsAre("a"));
  EXPECT_THAT(this->Ids({"labels.env!=prod"}), ElementsAre("b", "c"));
  EXPECT_THAT(this->Ids({"id==c", "labels.env==dev"}), ElementsAre("b", "c"));
  EXPECT_THAT(this->Ids({"labels.env,runtime.name~=runc"}), ElementsAre("a"));
  EXPECT_EQ(this->store().List(this->ctx_, {"id=="}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(ContainerStoreTest, UpdateAppliesFieldPaths) {
  Container created = this->MustCreate(this->Make("web", {{"keep", "1"}, {"drop", "2"}}));
  Container change = this->Make("web", {{"add", "3"}});
  change.image = "other:1";
  change.spec.value = "{}";
  change.snapshotter = "native";  // not a path: ignored with paths given
  change.snapshot_key = "web-snap";
  change.extensions = {{"x", Any{"t/x", "1"}}};
  absl::StatusOr<Container> updated = this->store().Update(
      this->ctx_, change, {"labels.add", "labels.drop", "extensions.x", "image"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, (LabelMap{{"add", "3"}, {"keep", "1"}}));
  EXPECT_EQ(updated->extensions, change.extensions);
  EXPECT_EQ(updated->image, "other:1");
  EXPECT_EQ(updated->spec, created.spec) << "the spec is kept without \"spec\"";
  EXPECT_EQ(updated->snapshotter, "");
  EXPECT_EQ(updated->created_at, created.created_at);
  EXPECT_GE(updated->updated_at, created.updated_at);

  // A full replace: every mutable field from `change`, the immutable ones must match.
  change.snapshotter = "";
  change.snapshot_key = "";
  change.extensions.clear();
  updated = this->store().Update(this->ctx_, change, {});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->spec, change.spec);
  EXPECT_EQ(updated->labels, change.labels);
  EXPECT_TRUE(updated->extensions.empty());

  absl::StatusOr<Container> got = this->store().Get(this->ctx_, "web");
  ASSERT_TRUE(got.ok()) << got.status();
  this->ExpectSameRecord(*got, *updated);
}

TYPED_TEST_P(ContainerStoreTest, BadUpdateChangesNothing) {
  Container original = this->Make("web", {{"k", "v"}});
  original.snapshotter = "overlayfs";
  original.snapshot_key = "web";
  this->MustCreate(original);
  absl::StatusOr<Container> before = this->store().Get(this->ctx_, "web");
  ASSERT_TRUE(before.ok());
  Container change = original;
  change.labels = {{"k", "new"}};
  for (const char* path : {"runtime", "runtime.name", "snapshotter", "id", "created_at", "bogus"}) {
    absl::StatusOr<Container> updated = this->store().Update(this->ctx_, change, {"labels.k", path});
    EXPECT_EQ(updated.status().code(), absl::StatusCode::kInvalidArgument) << path;
  }
  Container other_runtime = change;
  other_runtime.runtime.name = "io.containerd.runsc.v1";
  Container other_snapshotter = change;
  other_snapshotter.snapshotter = "native";
  Container no_spec = change;
  no_spec.spec = Any{};
  Container unnamed = change;
  unnamed.id = "";
  EXPECT_EQ(this->store().Update(this->ctx_, other_runtime, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store().Update(this->ctx_, other_snapshotter, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store().Update(this->ctx_, no_spec, {"labels.k", "spec"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store().Update(this->ctx_, unnamed, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Container> after = this->store().Get(this->ctx_, "web");
  ASSERT_TRUE(after.ok());
  this->ExpectSameRecord(*after, *before);
}

TYPED_TEST_P(ContainerStoreTest, DeleteRemovesTheRecord) {
  this->MustCreate(this->Make("a"));
  this->MustCreate(this->Make("b"));
  ASSERT_TRUE(this->store().Delete(this->ctx_, "a").ok());
  EXPECT_EQ(this->store().Get(this->ctx_, "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(this->Ids({}), ::testing::ElementsAre("b"));
  this->MustCreate(this->Make("a"));  // the id is free again
  EXPECT_THAT(this->Ids({}), ::testing::ElementsAre("a", "b"));
}

REGISTER_TYPED_TEST_SUITE_P(ContainerStoreTest, CreateThenGetKeepsEveryFieldAsSent,
                            DuplicateCreateIsAlreadyExistsAndKeepsTheFirst,
                            BadCreateIsInvalidArgumentAndStoresNothing, UnknownIdsAreNotFound,
                            NamespacesAreSeparate, ListFiltersAsContainerd, UpdateAppliesFieldPaths,
                            BadUpdateChangesNothing, DeleteRemovesTheRecord);

}  // namespace berth::containers
