// containerd's own `ctr images ls|tag|label|rm|check`, pointed straight at imaged's socket, and
// the events imaged publishes for them on a real nats-server. imaged runs as its real binary
// with a contentd beside it (ctr's `tag` takes a lease first, which imaged passes to contentd).
// Records are seeded with GrpcImageStore, since no ctr command creates a record from nothing
// without pulling or importing content.

#include <nats/nats.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "containerd/events/image.pb.h"
#include "containerd/services/events/v1/events.pb.h"
#include "integration/ctr_records.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "lib/base/digest.h"
#include "lib/base/grpc_client.h"
#include "lib/images/grpc_image_store.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::NatsServer;
using ::berth::testing::TempDir;
using ::testing::ElementsAre;

constexpr char kNamespace[] = "ctr-images-test";
constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";

class CtrImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(contentd_.Start().ok());
    ASSERT_TRUE(StartImaged(contentd_.address()).ok()) << imaged_.ReadLog();
    images_ = std::make_unique<images::GrpcImageStore>(Dial(address_));
  }

  absl::Status StartImaged(const std::string& contentd_address) {
    return imaged_.StartServing(
        "imaged",
        {testing::BinaryPath("services/imaged/imaged"), "--root", dir_.Join("imaged-root"),
         "--state", dir_.Join("imaged-state"), "--address", address_, "--contentd-address",
         contentd_address, "--nats-url", nats_.url(), "--log-level", "debug"},
        address_);
  }

  images::Image Seed(const std::string& name, const std::string& seed,
                     const LabelMap& labels = {}) {
    images::Image image;
    image.name = name;
    image.labels = labels;
    image.target.media_type = kIndexType;
    image.target.digest = Sha256Of(seed);
    image.target.size = 1234;
    absl::StatusOr<images::Image> created = images_->Create(ctx_, image);
    EXPECT_TRUE(created.ok()) << created.status();
    return image;
  }

  CommandResult Ctr(const std::vector<std::string>& args) {
    return integration::Ctr(address_, kNamespace, args);
  }

  TempDir dir_;
  NatsServer nats_;
  Contentd contentd_{dir_.path(), Contentd::Options{}};
  std::string address_ = dir_.Join("imaged.sock");
  DaemonProcess imaged_{dir_.path()};
  std::unique_ptr<images::GrpcImageStore> images_;
  const Context ctx_{kNamespace, ""};
};

TEST_F(CtrImagesTest, LsListsRecordsAndAppliesFilters) {
  images::Image alpine = Seed("docker.io/library/alpine:3.19", "a", {{"env", "prod"}});
  Seed("docker.io/library/busybox:1", "b", {{"env", "dev"}});
  Seed("ghcr.io/org/app:2", "c");

  CommandResult ls = Ctr({"images", "ls", "-q"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(Lines(ls.output), ElementsAre("docker.io/library/alpine:3.19",
                                            "docker.io/library/busybox:1", "ghcr.io/org/app:2"));
  ls = Ctr({"images", "ls", "-q", "labels.env==prod"});
  EXPECT_THAT(Lines(ls.output), ElementsAre("docker.io/library/alpine:3.19")) << ls.output;
  ls = Ctr({"images", "ls", "-q", "name~=^docker.io/,labels.env!=prod"});
  EXPECT_THAT(Lines(ls.output), ElementsAre("docker.io/library/busybox:1")) << ls.output;
  ls = Ctr({"images", "ls", "-q", "name=="});
  EXPECT_NE(ls.exit_code, 0) << "a malformed filter is refused: " << ls.output;

  // The table's size and platforms come from the content store (contentd's, served by imaged
  // too): these targets were never written, so ctr logs that and still prints the records.
  ls = Ctr({"images", "ls", "labels.env==prod"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_TRUE(absl::StrContains(ls.output, "docker.io/library/alpine:3.19"));
  EXPECT_TRUE(absl::StrContains(ls.output, alpine.target.digest.ToString()));
  EXPECT_TRUE(absl::StrContains(ls.output, "env=prod"));
  // Another namespace sees none of them.
  ls = integration::Ctr(address_, "other", {"images", "ls", "-q"});
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(Lines(ls.output), ::testing::IsEmpty());
}

TEST_F(CtrImagesTest, TagCopiesTheTargetUnderALeaseFromContentd) {
  images::Image src = Seed("docker.io/library/alpine:3.19", "a", {{"k", "v"}});
  CommandResult tag = Ctr({"images", "tag", src.name, "example.com/mine:1", "example.com/mine:2"});
  ASSERT_EQ(tag.exit_code, 0) << tag.output << imaged_.ReadLog();
  EXPECT_THAT(Lines(tag.output), ElementsAre("example.com/mine:1", "example.com/mine:2"));
  for (const char* name : {"example.com/mine:1", "example.com/mine:2"}) {
    absl::StatusOr<images::Image> copy = images_->Get(ctx_, name);
    ASSERT_TRUE(copy.ok()) << copy.status();
    EXPECT_EQ(copy->target.digest, src.target.digest);
    EXPECT_EQ(copy->target.size, src.target.size);
    EXPECT_EQ(copy->labels, src.labels);
  }
  // ctr's lease was made on contentd, through imaged, and deleted when ctr was done; what is
  // left are the records' own leases (image-<hash>, services/imaged/image_holds.h), one each.
  CommandResult leases = integration::Ctr(contentd_.address(), kNamespace, {"leases", "ls", "-q"});
  EXPECT_EQ(leases.exit_code, 0) << leases.output;
  EXPECT_THAT(Lines(leases.output), ::testing::Each(::testing::StartsWith("image-")));
  EXPECT_EQ(Lines(leases.output).size(), 3u) << leases.output;

  // Onto an existing name: refused without --force, replaced with it.
  images::Image other = Seed("example.com/other:1", "other");
  tag = Ctr({"images", "tag", other.name, "example.com/mine:1"});
  EXPECT_NE(tag.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(tag.output, "already exists")) << tag.output;
  EXPECT_EQ(images_->Get(ctx_, "example.com/mine:1")->target.digest, src.target.digest);
  tag = Ctr({"images", "tag", "--force", other.name, "example.com/mine:1"});
  ASSERT_EQ(tag.exit_code, 0) << tag.output;
  EXPECT_EQ(images_->Get(ctx_, "example.com/mine:1")->target.digest, other.target.digest);

  tag = Ctr({"images", "tag", "example.com/missing:1", "example.com/x:1"});
  EXPECT_NE(tag.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(tag.output, "not found")) << tag.output;
}

TEST_F(CtrImagesTest, TagWithoutContentdNamesIt) {
  // Seeded first: a record is not created while contentd cannot hold its target.
  Seed("example.com/a:1", "a");
  imaged_.Stop(absl::Seconds(10));
  ASSERT_TRUE(StartImaged(dir_.Join("no-contentd.sock")).ok()) << imaged_.ReadLog();
  CommandResult tag = Ctr({"images", "tag", "example.com/a:1", "example.com/b:1"});
  EXPECT_NE(tag.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(tag.output, "contentd")) << tag.output;
  EXPECT_EQ(images_->Get(ctx_, "example.com/b:1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CtrImagesTest, LabelSetsReplacesAndClears) {
  Seed("example.com/a:1", "a", {{"keep", "1"}});
  CommandResult label = Ctr({"images", "label", "example.com/a:1", "x=1", "y=2"});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(LabelSet(label.output), (std::set<std::string>{"keep=1", "x=1", "y=2"}));
  label = Ctr({"images", "label", "example.com/a:1", "x="});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(LabelSet(label.output), (std::set<std::string>{"keep=1", "y=2"}));
  label = Ctr({"images", "label", "--replace-all", "example.com/a:1", "only=me"});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(LabelSet(label.output), (std::set<std::string>{"only=me"}));
  EXPECT_EQ(images_->Get(ctx_, "example.com/a:1")->labels, (LabelMap{{"only", "me"}}));

  label = Ctr({"images", "label", "example.com/missing:1", "x=1"});
  EXPECT_NE(label.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(label.output, "not found")) << label.output;
}

TEST_F(CtrImagesTest, RmDeletesAndWarnsAboutUnknownNames) {
  Seed("example.com/a:1", "a");
  Seed("example.com/b:1", "b");
  Seed("example.com/c:1", "c");
  CommandResult rm = Ctr({"images", "rm", "example.com/a:1", "example.com/missing:1"});
  EXPECT_EQ(rm.exit_code, 0) << rm.output;  // ctr only warns about a missing image
  EXPECT_TRUE(absl::StrContains(rm.output, "example.com/missing:1: image not found")) << rm.output;
  rm = Ctr({"images", "rm", "--sync", "example.com/b:1"});
  EXPECT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_THAT(Lines(Ctr({"images", "ls", "-q"}).output), ElementsAre("example.com/c:1"));
}

TEST_F(CtrImagesTest, CheckReportsAnImageWhoseContentIsMissing) {
  images::Image image = Seed("example.com/a:1", "a");
  // check lists the records, then reads each target through the Content service imaged serves
  // from contentd: this one's target was never written, so it is unavailable, and ctr cannot
  // read the config to check the unpack either (an error, named).
  CommandResult check = Ctr({"images", "check"});
  EXPECT_NE(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, ::testing::ContainsRegex(absl::StrCat(
                                "example.com/a:1 +application/vnd.oci.image.index.v1\\+json +",
                                image.target.digest.ToString(), " +unavailable \\(0/\\?\\)")));
  EXPECT_TRUE(absl::StrContains(check.output, "unable to check unpack for example.com/a:1"))
      << check.output;
  EXPECT_TRUE(absl::StrContains(check.output,
                                absl::StrCat(image.target.digest.ToString(), ": not found")))
      << check.output;
  // With a filter that matches nothing, check has nothing to read and succeeds.
  check = Ctr({"images", "check", "name==example.com/none"});
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(CtrImagesTest, PublishesCreateUpdateDelete) {
  BusEvents events(nats_.url(), kNamespace, "images");
  Seed("example.com/a:1", "a", {{"k", "v"}});
  ASSERT_EQ(Ctr({"images", "label", "example.com/a:1", "k=w"}).exit_code, 0);
  ASSERT_EQ(Ctr({"images", "rm", "example.com/a:1"}).exit_code, 0);

  std::string subject;
  containerd::services::events::v1::Envelope envelope;
  ASSERT_TRUE(events.Next(&subject, &envelope));
  EXPECT_EQ(subject, absl::StrCat("berth.events.", kNamespace, ".images.create"));
  EXPECT_EQ(envelope.topic(), "/images/create");
  EXPECT_EQ(envelope.namespace_(), kNamespace);
  EXPECT_EQ(envelope.event().type_url(), "containerd.services.images.v1.ImageCreate");
  containerd::services::images::v1::ImageCreate create;
  ASSERT_TRUE(create.ParseFromString(envelope.event().value()));
  EXPECT_EQ(create.name(), "example.com/a:1");
  EXPECT_EQ(create.labels().at("k"), "v");

  ASSERT_TRUE(events.Next(&subject, &envelope));
  EXPECT_EQ(envelope.topic(), "/images/update");
  containerd::services::images::v1::ImageUpdate update;
  ASSERT_TRUE(update.ParseFromString(envelope.event().value()));
  EXPECT_EQ(update.labels().at("k"), "w");

  ASSERT_TRUE(events.Next(&subject, &envelope));
  EXPECT_EQ(subject, absl::StrCat("berth.events.", kNamespace, ".images.delete"));
  containerd::services::images::v1::ImageDelete deleted;
  ASSERT_TRUE(deleted.ParseFromString(envelope.event().value()));
  EXPECT_EQ(deleted.name(), "example.com/a:1");
}

// ctr pointed at imaged alone, with a real image: `berth import` of the busybox test image into
// contentd (blobs) and snapshotd (its chain) through imaged. imaged serves containerd's Content
// and Snapshots services from them, and passes Namespaces to contentd, so `images check` reads
// all it needs on imaged's socket, and ctr's content and snapshot commands work there too.
class CtrImagesCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = stack_.Start();
    ASSERT_TRUE(started.ok()) << started;
    absl::Status imported = stack_.ImportBusybox("test/busybox:v1");
    ASSERT_TRUE(imported.ok()) << imported;
    nlohmann::json index =
        nlohmann::json::parse(ReadFile(layout_ + "/index.json").value_or("{}"));
    manifest_ = index["manifests"][0]["digest"];
    nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(layout_, manifest_));
    layer_ = manifest["layers"][0]["digest"];
    chain_ = TopChainId(
        nlohmann::json::parse(LayoutBlob(layout_, manifest["config"]["digest"])));
  }

  CommandResult Ctr(const std::vector<std::string>& args) {
    return integration::Ctr(stack_.address, "default", args);
  }

  TempDir dir_;
  ImagedStack stack_{dir_.path()};
  const std::string layout_ = dir_.Join("busybox-layout");
  std::string manifest_, layer_, chain_;
};

TEST_F(CtrImagesCheckTest, CheckReadsContentAndSnapshotsThroughImaged) {
  CommandResult check = Ctr({"images", "check"});
  ASSERT_EQ(check.exit_code, 0) << check.output << stack_.imaged.ReadLog();
  EXPECT_THAT(check.output,
              ::testing::ContainsRegex(absl::StrCat("docker.io/test/busybox:v1 +[^ ]+ +", manifest_,
                                                    " +complete \\(2/2\\) .* true")));
  EXPECT_THAT(Lines(Ctr({"images", "check", "-q"}).output),
              ElementsAre("docker.io/test/busybox:v1"));
  CommandResult ls = Ctr({"images", "ls"});
  EXPECT_THAT(ls.output, ::testing::ContainsRegex("docker.io/test/busybox:v1 .* linux/amd64"));

  // The layer removed through imaged's socket is gone from contentd: check sees it missing.
  CommandResult rm = Ctr({"content", "rm", layer_});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  CommandResult on_contentd =
      integration::Ctr(stack_.contentd.address(), "default", {"content", "ls", "-q"});
  EXPECT_FALSE(absl::StrContains(on_contentd.output, layer_)) << on_contentd.output;
  check = Ctr({"images", "check"});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, ::testing::ContainsRegex("incomplete \\(1/2\\) .* true"));
  EXPECT_THAT(Lines(Ctr({"images", "check", "-q"}).output), ::testing::IsEmpty());

  // The chain's snapshot removed through imaged's socket is gone from snapshotd: not unpacked.
  rm = Ctr({"snapshots", "rm", chain_});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  CommandResult on_snapshotd =
      integration::Ctr(stack_.snapshotd.address(), "default", {"snapshots", "ls"});
  EXPECT_FALSE(absl::StrContains(on_snapshotd.output, chain_)) << on_snapshotd.output;
  check = Ctr({"images", "check"});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, ::testing::ContainsRegex("incomplete \\(1/2\\) .* false"));
}

}  // namespace
}  // namespace berth::integration
