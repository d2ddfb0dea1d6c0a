#pragma once

// The one conformance suite for images::ImageStore (after containerd's metadata image tests):
// every implementation runs it, imaged's SqliteImageStore directly and GrpcImageStore against
// the real Images service, which proves the wire loses nothing. It tests the contract in
// image_store.h and nothing an implementation is free to choose (error messages).
//
// Usage, in a test .cc that links gtest:
//   struct MyHarness {
//     MyHarness();                   // a fresh, empty store
//     images::ImageStore& store();
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mine, ImageStoreTest, ::testing::Types<MyHarness>);

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/images/image_store.h"

namespace berth::images {

inline constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";

template <typename Harness>
class ImageStoreTest : public ::testing::Test {
 protected:
  ImageStore& store() { return harness_.store(); }

  static Image Make(const std::string& name, const std::string& seed,
                    const LabelMap& labels = {}) {
    Image image;
    image.name = name;
    image.labels = labels;
    image.target.media_type = kIndexType;
    image.target.digest = Sha256Of(seed);
    image.target.size = static_cast<int64_t>(seed.size()) + 100;
    return image;
  }

  // Creates `image` and expects success.
  Image MustCreate(const Image& image, const Context* ctx = nullptr) {
    absl::StatusOr<Image> created = store().Create(ctx ? *ctx : ctx_, image);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Image{};
  }

  // The names List returns for `filters`, in order.
  std::vector<std::string> Names(const std::vector<std::string>& filters) {
    absl::StatusOr<std::vector<Image>> list = store().List(ctx_, filters);
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<std::string> names;
    for (const Image& image : list.ok() ? *list : std::vector<Image>{}) {
      names.push_back(image.name);
    }
    return names;
  }

  static void ExpectSameRecord(const Image& a, const Image& b) {
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.labels, b.labels);
    EXPECT_EQ(a.target.media_type, b.target.media_type);
    EXPECT_EQ(a.target.digest, b.target.digest);
    EXPECT_EQ(a.target.size, b.target.size);
    EXPECT_EQ(a.target.annotations, b.target.annotations);
    EXPECT_EQ(a.created_at, b.created_at);
    EXPECT_EQ(a.updated_at, b.updated_at);
  }

  Harness harness_;
  const Context ctx_{"suite", ""};
};

TYPED_TEST_SUITE_P(ImageStoreTest);

TYPED_TEST_P(ImageStoreTest, CreateThenGetKeepsEveryField) {
  Image image = this->Make("docker.io/library/alpine:3.19", "a", {{"k", "v"}});
  image.target.annotations = {{"org.opencontainers.image.ref.name", "3.19"}};
  const absl::Time before = absl::Now();
  Image created = this->MustCreate(image);
  EXPECT_GE(created.created_at, before - absl::Seconds(1));
  EXPECT_EQ(created.updated_at, created.created_at);

  absl::StatusOr<Image> got = this->store().Get(this->ctx_, image.name);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->labels, image.labels);
  EXPECT_EQ(got->target.annotations, image.target.annotations);
  this->ExpectSameRecord(*got, created);
}

TYPED_TEST_P(ImageStoreTest, DuplicateCreateIsAlreadyExistsAndKeepsTheFirst) {
  Image first = this->MustCreate(this->Make("x/y:1", "first"));
  absl::StatusOr<Image> again = this->store().Create(this->ctx_, this->Make("x/y:1", "second"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  absl::StatusOr<Image> got = this->store().Get(this->ctx_, "x/y:1");
  ASSERT_TRUE(got.ok()) << got.status();
  this->ExpectSameRecord(*got, first);
}

TYPED_TEST_P(ImageStoreTest, BadCreateIsInvalidArgumentAndStoresNothing) {
  std::vector<Image> bad(6, this->Make("ok", "t"));
  bad[0].name = "";
  bad[1].name = std::string("a\nb");
  bad[2].target.digest = Digest();
  bad[3].target.size = 0;
  bad[4].target.media_type = "";
  bad[5].labels = {{"k", std::string(5000, 'v')}};
  for (const Image& image : bad) {
    absl::StatusOr<Image> created = this->store().Create(this->ctx_, image);
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument)
        << "name \"" << image.name << "\": " << created.status();
  }
  EXPECT_THAT(this->Names({}), ::testing::IsEmpty());
}

TYPED_TEST_P(ImageStoreTest, UnknownNamesAreNotFound) {
  EXPECT_EQ(this->store().Get(this->ctx_, "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Delete(this->ctx_, "nope", false).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Update(this->ctx_, this->Make("nope", "t"), {}).status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST_P(ImageStoreTest, NamespacesAreSeparate) {
  const Context other{"other", ""};
  this->MustCreate(this->Make("same", "in-suite"));
  this->MustCreate(this->Make("same", "in-other"), &other);
  absl::StatusOr<Image> got = this->store().Get(other, "same");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->target.digest, Sha256Of("in-other"));
  ASSERT_TRUE(this->store().Delete(other, "same", false).ok());
  EXPECT_TRUE(this->store().Get(this->ctx_, "same").ok());
  EXPECT_EQ(this->store().Get(Context{"Bad Namespace!", ""}, "same").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(ImageStoreTest, ListFiltersAsContainerd) {
  Image a = this->Make("docker.io/library/alpine:3.19", "a", {{"env", "prod"}});
  a.target.annotations = {{"org.example.note", "x"}};
  Image b = this->Make("docker.io/library/busybox:1", "b", {{"env", "dev"}});
  b.target.media_type = kManifestType;
  Image c = this->Make("ghcr.io/org/app:2", "c");
  for (const Image& image : {c, a, b}) {
    this->MustCreate(image);
  }
  using ::testing::ElementsAre;
  EXPECT_THAT(this->Names({}), ElementsAre(a.name, b.name, c.name));
  EXPECT_THAT(this->Names({"name==" + b.name}), ElementsAre(b.name));
  EXPECT_THAT(this->Names({"name~=^docker.io/"}), ElementsAre(a.name, b.name));
  EXPECT_THAT(this->Names({"labels.env==prod"}), ElementsAre(a.name));
  EXPECT_THAT(this->Names({"labels.env"}), ElementsAre(a.name, b.name));
  EXPECT_THAT(this->Names({"labels.env!=prod"}), ElementsAre(b.name, c.name));
  EXPECT_THAT(this->Names({"target.mediatype==" + std::string(kManifestType)}),
              ElementsAre(b.name));
  EXPECT_THAT(this->Names({"target.digest==" + c.target.digest.ToString()}), ElementsAre(c.name));
  EXPECT_THAT(this->Names({"annotations.\"org.example.note\"==x"}), ElementsAre(a.name));
  EXPECT_THAT(this->Names({"name==" + c.name, "labels.env==dev"}), ElementsAre(b.name, c.name));
  EXPECT_THAT(this->Names({"name~=docker,labels.env==dev"}), ElementsAre(b.name));
  EXPECT_EQ(this->store().List(this->ctx_, {"name=="}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(ImageStoreTest, UpdateAppliesFieldPaths) {
  Image created = this->MustCreate(this->Make("app:1", "v1", {{"keep", "1"}, {"drop", "2"}}));
  Image change = this->Make("app:1", "v2", {{"add", "3"}});
  change.target.annotations = {{"note", "n"}};
  absl::StatusOr<Image> updated =
      this->store().Update(this->ctx_, change, {"labels.add", "labels.drop", "annotations.note"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, (LabelMap{{"add", "3"}, {"keep", "1"}}));
  EXPECT_EQ(updated->target.annotations, (LabelMap{{"note", "n"}}));
  EXPECT_EQ(updated->target.digest, Sha256Of("v1")) << "the target is kept without \"target\"";
  EXPECT_EQ(updated->created_at, created.created_at);
  EXPECT_GE(updated->updated_at, created.updated_at);

  updated = this->store().Update(this->ctx_, change, {"target", "labels"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->target.digest, Sha256Of("v2"));
  EXPECT_EQ(updated->labels, (LabelMap{{"add", "3"}}));

  Image whole = this->Make("app:1", "v3");
  updated = this->store().Update(this->ctx_, whole, {});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->target.digest, Sha256Of("v3"));
  EXPECT_TRUE(updated->labels.empty());
  EXPECT_TRUE(updated->target.annotations.empty());

  absl::StatusOr<Image> got = this->store().Get(this->ctx_, "app:1");
  ASSERT_TRUE(got.ok()) << got.status();
  this->ExpectSameRecord(*got, *updated);
}

TYPED_TEST_P(ImageStoreTest, BadUpdateChangesNothing) {
  this->MustCreate(this->Make("app:1", "v1", {{"k", "v"}}));
  absl::StatusOr<Image> before = this->store().Get(this->ctx_, "app:1");
  ASSERT_TRUE(before.ok());
  Image change = this->Make("app:1", "v2", {{"k", "new"}});
  for (const char* path : {"name", "target.digest", "created_at", "bogus"}) {
    absl::StatusOr<Image> updated = this->store().Update(this->ctx_, change, {"labels.k", path});
    EXPECT_EQ(updated.status().code(), absl::StatusCode::kInvalidArgument) << path;
  }
  Image no_target = change;
  no_target.target = {};
  EXPECT_EQ(this->store().Update(this->ctx_, no_target, {"labels.k", "target"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Image unnamed = change;
  unnamed.name = "";
  EXPECT_EQ(this->store().Update(this->ctx_, unnamed, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Image> after = this->store().Get(this->ctx_, "app:1");
  ASSERT_TRUE(after.ok());
  this->ExpectSameRecord(*after, *before);
}

TYPED_TEST_P(ImageStoreTest, DeleteRemovesTheRecord) {
  this->MustCreate(this->Make("a", "a"));
  this->MustCreate(this->Make("b", "b"));
  ASSERT_TRUE(this->store().Delete(this->ctx_, "a", /*sync=*/false).ok());
  ASSERT_TRUE(this->store().Delete(this->ctx_, "b", /*sync=*/true).ok());
  EXPECT_EQ(this->store().Get(this->ctx_, "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(this->Names({}), ::testing::IsEmpty());
  // The name is free again.
  this->MustCreate(this->Make("a", "again"));
  EXPECT_THAT(this->Names({}), ::testing::ElementsAre("a"));
}

REGISTER_TYPED_TEST_SUITE_P(ImageStoreTest, CreateThenGetKeepsEveryField,
                            DuplicateCreateIsAlreadyExistsAndKeepsTheFirst,
                            BadCreateIsInvalidArgumentAndStoresNothing, UnknownNamesAreNotFound,
                            NamespacesAreSeparate, ListFiltersAsContainerd, UpdateAppliesFieldPaths,
                            BadUpdateChangesNothing, DeleteRemovesTheRecord);

}  // namespace berth::images
