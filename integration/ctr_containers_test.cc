// containerd's own `ctr containers ls|info|label|rm`, pointed straight at execd's socket (the
// real binary), and the events execd publishes for them on a real nats-server.
//
// Most records are seeded with GrpcContainerStore. `ctr containers create --rootfs` makes one
// itself: the Go client's NewContainer first calls Leases.Create on the same socket
// (client.WithLease), which execd passes through to contentd (a real one runs beside it), then
// Containers.Create with the lease, then Leases.Delete. With an image instead of --rootfs it
// would also need the Images, Content and Snapshots services (imaged, contentd, snapshotd).
// `ctr containers rm` removes a record's snapshot through the Snapshots service on the same
// socket, which execd serves from snapshotd (a real one runs beside it too).

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
#include "containerd/events/container.pb.h"
#include "containerd/services/events/v1/events.pb.h"
#include "integration/ctr_records.h"
#include "integration/harness.h"
#include "integration/snapshotd_harness.h"
#include "lib/base/grpc_client.h"
#include "lib/base/posix.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::NatsServer;
using ::berth::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kNamespace[] = "ctr-containers-test";
constexpr char kSpecType[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
constexpr char kSpec[] =
    R"({"ociVersion":"1.0.2","process":{"args":["sh","-c","echo hi"],"cwd":"/"},)"
    R"("root":{"path":"rootfs"},"hostname":"web-host"})";

class CtrContainersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(contentd_.Start().ok());
    ASSERT_TRUE(snapshotd_.Start().ok()) << snapshotd_.ReadLog();
    ASSERT_TRUE(StartExecd(snapshotd_.address()).ok()) << execd_.ReadLog();
    store_ = std::make_unique<containers::GrpcContainerStore>(Dial(address_));
  }

  absl::Status StartExecd(const std::string& snapshotd_address) {
    return execd_.StartServing(
        "execd",
        {testing::BinaryPath("services/execd/execd"), "--root", dir_.Join("execd-root"),
         "--state", dir_.Join("execd-state"), "--address", address_, "--contentd-address",
         contentd_.address(), "--snapshotd-address", snapshotd_address, "--nats-url",
         nats_.url(), "--log-level", "debug"},
        address_);
  }

  // A record whose rootfs is the snapshot `key` (not made here).
  void SeedWithSnapshot(const std::string& id, const std::string& key) {
    containers::Container c = Seed(id);
    c.snapshotter = "overlayfs";
    c.snapshot_key = key;
    ASSERT_TRUE(store_->Delete(ctx_, id).ok());
    ASSERT_TRUE(store_->Create(ctx_, c).ok());
  }

  containers::Container Seed(const std::string& id, const LabelMap& labels = {},
                             const std::string& runtime = "io.containerd.runc.v2") {
    containers::Container c;
    c.id = id;
    c.labels = labels;
    c.image = "docker.io/library/alpine:3.19";
    c.runtime.name = runtime;
    c.spec = containers::Any{kSpecType, kSpec};
    absl::StatusOr<containers::Container> created = store_->Create(ctx_, c);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : c;
  }

  CommandResult Ctr(const std::vector<std::string>& args) {
    return integration::Ctr(address_, kNamespace, args);
  }

  TempDir dir_;
  NatsServer nats_;
  std::string address_ = dir_.Join("execd.sock");
  Contentd contentd_{dir_.path(), Contentd::Options{}};
  Snapshotd snapshotd_{dir_.path(), Snapshotd::Options{}};
  DaemonProcess execd_{dir_.path()};
  std::unique_ptr<containers::GrpcContainerStore> store_;
  const Context ctx_{kNamespace, ""};
};

TEST_F(CtrContainersTest, LsListsRecordsAndAppliesFilters) {
  Seed("web", {{"env", "prod"}});
  Seed("db", {{"env", "dev"}}, "io.containerd.runsc.v1");
  Seed("cache");

  CommandResult ls = Ctr({"containers", "ls", "-q"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(Lines(ls.output), ElementsAre("cache", "db", "web"));
  ls = Ctr({"containers", "ls", "-q", "labels.env==prod"});
  EXPECT_THAT(Lines(ls.output), ElementsAre("web")) << ls.output;
  ls = Ctr({"containers", "ls", "-q", "runtime.name~=runsc"});
  EXPECT_THAT(Lines(ls.output), ElementsAre("db")) << ls.output;
  ls = Ctr({"containers", "ls", "-q", "id==cache", "labels.env!=dev,labels.env"});
  EXPECT_THAT(Lines(ls.output), ElementsAre("cache", "web")) << ls.output;
  ls = Ctr({"containers", "ls", "-q", "id=="});
  EXPECT_NE(ls.exit_code, 0) << "a malformed filter is refused: " << ls.output;

  ls = Ctr({"containers", "ls", "labels.env==prod"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  ASSERT_EQ(Lines(ls.output).size(), 2u) << ls.output;
  EXPECT_THAT(Lines(ls.output)[1], ::testing::MatchesRegex(
                                       "web +docker.io/library/alpine:3.19 +io.containerd.runc.v2"));
  ls = integration::Ctr(address_, "other", {"containers", "ls", "-q"});
  EXPECT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(Lines(ls.output), ::testing::IsEmpty());
}

TEST_F(CtrContainersTest, InfoShowsTheRecordAndTheSpecAsSent) {
  Seed("web", {{"env", "prod"}});
  CommandResult info = Ctr({"containers", "info", "web"});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr(R"("ID": "web")"));
  EXPECT_THAT(info.output, HasSubstr(R"("env": "prod")"));
  EXPECT_THAT(info.output, HasSubstr(R"("Name": "io.containerd.runc.v2")"));
  EXPECT_THAT(info.output, HasSubstr(R"("hostname": "web-host")"));
  info = Ctr({"containers", "info", "--spec", "web"});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr(R"("ociVersion": "1.0.2")"));
  EXPECT_THAT(info.output, HasSubstr(R"("echo hi")"));

  info = Ctr({"containers", "info", "missing"});
  EXPECT_NE(info.exit_code, 0);
  EXPECT_THAT(info.output, HasSubstr("not found"));
}

TEST_F(CtrContainersTest, LabelSetsAndClears) {
  Seed("web", {{"keep", "1"}});
  CommandResult label = Ctr({"containers", "label", "web", "x=1", "y=2"});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(LabelSet(label.output), (std::set<std::string>{"keep=1", "x=1", "y=2"}));
  label = Ctr({"containers", "label", "web", "x="});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(LabelSet(label.output), (std::set<std::string>{"keep=1", "y=2"}));
  EXPECT_EQ(store_->Get(ctx_, "web")->labels, (LabelMap{{"keep", "1"}, {"y", "2"}}));

  label = Ctr({"containers", "label", "missing", "x=1"});
  EXPECT_NE(label.exit_code, 0);
  EXPECT_THAT(label.output, HasSubstr("not found"));
}

TEST_F(CtrContainersTest, RmDeletesRecords) {
  Seed("a");
  Seed("b");
  Seed("c");
  // ctr asks the Tasks service for the container's task first; execd serves none yet, and ctr
  // takes any error there as "no task" and deletes the record.
  CommandResult rm = Ctr({"containers", "rm", "a", "b"});
  EXPECT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_THAT(Lines(Ctr({"containers", "ls", "-q"}).output), ElementsAre("c"));
  rm = Ctr({"containers", "rm", "missing"});
  EXPECT_NE(rm.exit_code, 0);
  EXPECT_THAT(rm.output, HasSubstr("not found"));
}

TEST_F(CtrContainersTest, RmRemovesTheRecordsSnapshotThroughSnapshotd) {
  snapshots::GrpcSnapshotter snapshotd(Dial(snapshotd_.address()), "overlayfs");
  ASSERT_TRUE(snapshotd.Prepare(ctx_, "web-rootfs", "", {}).ok());
  SeedWithSnapshot("web", "web-rootfs");
  // The record holds its snapshot with a lease on contentd (services/execd/container_holds.h),
  // where snapshotd's collector finds its roots.
  CommandResult leases = integration::Ctr(contentd_.address(), kNamespace, {"leases", "ls"});
  EXPECT_THAT(leases.output, ::testing::ContainsRegex("container-web .*berth.io/container=web"))
      << leases.output;
  // execd serves snapshotd's snapshots on its own socket.
  CommandResult ls = Ctr({"snapshots", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_THAT(ls.output, ::testing::ContainsRegex("web-rootfs +Active"));
  // Without --keep-snapshot ctr removes the snapshot through that service, then the record.
  CommandResult rm = Ctr({"containers", "rm", "web"});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_EQ(store_->Get(ctx_, "web").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(snapshotd.Stat(ctx_, "web-rootfs").status().code(), absl::StatusCode::kNotFound);
  leases = integration::Ctr(contentd_.address(), kNamespace, {"leases", "ls", "-q"});
  EXPECT_THAT(Lines(leases.output), ::testing::IsEmpty());

  // --keep-snapshot leaves it.
  ASSERT_TRUE(snapshotd.Prepare(ctx_, "db-rootfs", "", {}).ok());
  SeedWithSnapshot("db", "db-rootfs");
  rm = Ctr({"containers", "rm", "--keep-snapshot", "db"});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_EQ(store_->Get(ctx_, "db").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(snapshotd.Stat(ctx_, "db-rootfs").ok());
}

TEST_F(CtrContainersTest, ALeaseLostBetweenRecordAndLeaseIsMadeAgainAtStart) {
  SeedWithSnapshot("web", "web-rootfs");
  ASSERT_EQ(execd_.Stop(absl::Seconds(10)), 0);
  // As if execd had been killed after the record and before its lease.
  CommandResult rm = integration::Ctr(contentd_.address(), kNamespace,
                                      {"leases", "rm", "container-web"});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  ASSERT_TRUE(StartExecd(snapshotd_.address()).ok()) << execd_.ReadLog();
  CommandResult leases = integration::Ctr(contentd_.address(), kNamespace, {"leases", "ls"});
  EXPECT_THAT(leases.output, ::testing::ContainsRegex("container-web .*berth.io/container=web"))
      << leases.output;
  leases::GrpcLeaseManager contentd_leases(Dial(contentd_.address()));
  absl::StatusOr<std::vector<leases::Resource>> held =
      contentd_leases.ListResources(ctx_, "container-web");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(*held, (std::vector<leases::Resource>{{"web-rootfs", "snapshots/overlayfs"}}));
}

TEST_F(CtrContainersTest, RmWithoutSnapshotdNamesItAndKeepsTheRecord) {
  SeedWithSnapshot("web", "web-rootfs");
  ASSERT_EQ(execd_.Stop(absl::Seconds(10)), 0);
  const std::string missing = dir_.Join("no-snapshotd.sock");
  ASSERT_TRUE(StartExecd(missing).ok()) << execd_.ReadLog();
  // ctr removes the snapshot first: that fails, naming the socket, and the record stays.
  CommandResult rm = Ctr({"containers", "rm", "web"});
  EXPECT_NE(rm.exit_code, 0) << rm.output;
  EXPECT_THAT(rm.output, HasSubstr(missing));
  EXPECT_TRUE(store_->Get(ctx_, "web").ok());
  rm = Ctr({"containers", "rm", "--keep-snapshot", "web"});
  EXPECT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_EQ(store_->Get(ctx_, "web").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CtrContainersTest, ARecordWithASnapshotNeedsContentdAndIsNotMadeWithout) {
  contentd_.Stop();
  containers::Container c;
  c.id = "web";
  c.runtime.name = "io.containerd.runc.v2";
  c.spec = containers::Any{kSpecType, kSpec};
  c.snapshotter = "overlayfs";
  c.snapshot_key = "web-rootfs";
  absl::StatusOr<containers::Container> created = store_->Create(ctx_, c);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kUnavailable) << created.status();
  EXPECT_THAT(std::string(created.status().message()),
              HasSubstr("holding its snapshot web-rootfs with a lease on contentd"));
  EXPECT_THAT(std::string(created.status().message()), HasSubstr(contentd_.address()));
  EXPECT_EQ(store_->Get(ctx_, "web").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CtrContainersTest, CreateMakesTheRecordUnderALeaseFromContentd) {
  ASSERT_TRUE(MakeDirs(dir_.Join("rootfs"), 0755).ok());
  CommandResult create = Ctr({"containers", "create", "--rootfs", dir_.Join("rootfs"), "web", "sh"});
  ASSERT_EQ(create.exit_code, 0) << create.output;
  absl::StatusOr<containers::Container> web = store_->Get(ctx_, "web");
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_EQ(web->runtime.name, "io.containerd.runc.v2");
  EXPECT_THAT(web->spec.value, HasSubstr(dir_.Join("rootfs")));  // ctr's spec, stored as sent
  EXPECT_THAT(web->spec.value, HasSubstr("\"sh\""));
  // ctr deleted its lease on contentd once the record was made.
  CommandResult leases = integration::Ctr(contentd_.address(), kNamespace, {"leases", "ls", "-q"});
  EXPECT_EQ(leases.exit_code, 0) << leases.output;
  EXPECT_THAT(Lines(leases.output), ::testing::IsEmpty());
  // A second create of the same id is refused and changes nothing.
  create = Ctr({"containers", "create", "--rootfs", dir_.Join("rootfs"), "web", "true"});
  EXPECT_NE(create.exit_code, 0);
  EXPECT_THAT(create.output, HasSubstr("already exists"));
  EXPECT_THAT(store_->Get(ctx_, "web")->spec.value, HasSubstr("\"sh\""));
}

TEST_F(CtrContainersTest, PublishesCreateUpdateDelete) {
  BusEvents events(nats_.url(), kNamespace, "containers");
  Seed("web", {{"k", "v"}});
  ASSERT_EQ(Ctr({"containers", "label", "web", "k=w"}).exit_code, 0);
  ASSERT_EQ(Ctr({"containers", "rm", "web"}).exit_code, 0);

  std::string subject;
  containerd::services::events::v1::Envelope envelope;
  ASSERT_TRUE(events.Next(&subject, &envelope));
  EXPECT_EQ(subject, absl::StrCat("berth.events.", kNamespace, ".containers.create"));
  EXPECT_EQ(envelope.topic(), "/containers/create");
  EXPECT_EQ(envelope.namespace_(), kNamespace);
  EXPECT_EQ(envelope.event().type_url(), "containerd.events.ContainerCreate");
  containerd::events::ContainerCreate create;
  ASSERT_TRUE(create.ParseFromString(envelope.event().value()));
  EXPECT_EQ(create.id(), "web");
  EXPECT_EQ(create.image(), "docker.io/library/alpine:3.19");
  EXPECT_EQ(create.runtime().name(), "io.containerd.runc.v2");

  ASSERT_TRUE(events.Next(&subject, &envelope));
  EXPECT_EQ(envelope.topic(), "/containers/update");
  containerd::events::ContainerUpdate update;
  ASSERT_TRUE(update.ParseFromString(envelope.event().value()));
  EXPECT_EQ(update.id(), "web");
  EXPECT_EQ(update.labels().at("k"), "w");

  ASSERT_TRUE(events.Next(&subject, &envelope));
  EXPECT_EQ(subject, absl::StrCat("berth.events.", kNamespace, ".containers.delete"));
  containerd::events::ContainerDelete deleted;
  ASSERT_TRUE(deleted.ParseFromString(envelope.event().value()));
  EXPECT_EQ(deleted.id(), "web");
}

}  // namespace
}  // namespace berth::integration
