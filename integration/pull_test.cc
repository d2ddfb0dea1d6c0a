// `berth pull` end to end (issue 10, the pull slice): an image made by umoci and pushed by
// skopeo to a real docker-registry on 127.0.0.1, pulled through the real imaged binary into a
// real contentd and snapshotd, and every piece checked through the daemons' own APIs: the
// blobs (digests from the layout), the image record, the committed snapshot chain (mounted,
// /hello inside), no lease left behind; a second pull finds every blob there already. An
// unknown tag: NotFound, no record, no lease. And imaged SIGKILLed once contentd holds part of
// a 32 MiB layer: no record, no lease once imaged is back, the partial layer kept, and the next
// pull completes asking the registry only for the rest (Range: a 206 in its log). And the
// pull metrics on /metrics after two pulls and a failed one. The progress as drawn on a
// terminal (a pty: bars redrawn in place with ANSI escapes, a summary), as lines through a
// pipe (no escapes) and as --json events.

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "integration/pull_test_util.h"
#include "lib/base/grpc_client.h"
#include "lib/content/grpc_content_store.h"
#include "lib/images/grpc_image_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

constexpr char kRepo[] = "test/hello";
constexpr char kTag[] = "latest";

Context Ctx() { return DefaultNamespace(); }

class PullTest : public ImagedStackTest {
 protected:
  void SetUp() override {
    layout_ = dir_.Join("layout");
    ASSERT_TRUE(MakeTestImage(layout_, kTag).ok());
    ASSERT_TRUE(registry_.Start().ok()) << registry_.ReadLog();
    absl::Status pushed = registry_.Push(layout_, kTag, kRepo);
    ASSERT_TRUE(pushed.ok()) << pushed;
    absl::Status stores = stack_.StartStores();
    ASSERT_TRUE(stores.ok()) << stores;
    absl::Status started = StartImaged();
    ASSERT_TRUE(started.ok()) << started;
  }

  absl::Status StartImaged(const std::vector<std::string>& extra = {}) {
    return stack_.StartImaged(extra);
  }

  std::string Reference(const std::string& tag) const {
    return absl::StrCat(registry_.host(), "/", kRepo, ":", tag);
  }

  CommandResult Berth(const std::vector<std::string>& args) { return stack_.Berth(args); }

  std::string LayoutBlob(const std::string& digest) const {
    return integration::LayoutBlob(layout_, digest);
  }

  void ExpectNoLease() { ExpectNoLeaseIn(contentd_.address(), Ctx()); }

  // Lines of the registry's log that contain every one of `parts`.
  int CountRegistryLines(const std::vector<std::string>& parts) const {
    int count = 0;
    for (absl::string_view line : absl::StrSplit(registry_.ReadLog(), '\n')) {
      count += std::all_of(parts.begin(), parts.end(),
                           [&](const std::string& p) { return absl::StrContains(line, p); });
    }
    return count;
  }

  std::string layout_;
  Registry registry_{dir_.path()};
};

TEST_F(PullTest, PullsBlobsRecordAndSnapshotChainThenFindsThemThere) {
  CommandResult pull = Berth({"pull", Reference(kTag), "--insecure-registry", registry_.host()});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();

  // The layout's documents: what skopeo pushed, byte for byte.
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
  std::string manifest_digest = index["manifests"][0]["digest"];
  nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(manifest_digest));
  std::string config_digest = manifest["config"]["digest"];
  nlohmann::json config = nlohmann::json::parse(LayoutBlob(config_digest));
  std::vector<std::string> blobs = {manifest_digest, config_digest};
  for (const nlohmann::json& layer : manifest["layers"]) {
    blobs.push_back(layer["digest"]);
  }
  EXPECT_TRUE(absl::StrContains(pull.output,
                                absl::StrCat("pulled ", Reference(kTag), " ", manifest_digest)))
      << pull.output;

  // contentd: every blob, with its layout size; the manifest naming its children, held by the
  // record's lease (no gc.root: nothing stays rooted once the record goes).
  content::GrpcContentStore content(Dial(contentd_.address()));
  for (const std::string& digest : blobs) {
    absl::StatusOr<content::Info> info = content.GetInfo(Ctx(), *Digest::Parse(digest));
    ASSERT_TRUE(info.ok()) << digest << ": " << info.status();
    EXPECT_EQ(info->size, static_cast<int64_t>(LayoutBlob(digest).size())) << digest;
    EXPECT_TRUE(absl::StrContains(pull.output, digest + " done")) << digest << pull.output;
  }
  absl::StatusOr<content::Info> root = content.GetInfo(Ctx(), *Digest::Parse(manifest_digest));
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->labels.count("containerd.io/gc.root"), 0u);
  {
    leases::GrpcLeaseManager leases(Dial(contentd_.address()));
    absl::StatusOr<std::vector<leases::Lease>> held =
        leases.List(Ctx(), {absl::StrCat("labels.\"berth.io/image\"==\"", Reference(kTag), "\"")});
    ASSERT_TRUE(held.ok()) << held.status();
    ASSERT_EQ(held->size(), 1u);
    absl::StatusOr<std::vector<leases::Resource>> resources =
        leases.ListResources(Ctx(), (*held)[0].id);
    ASSERT_TRUE(resources.ok()) << resources.status();
    EXPECT_EQ(*resources, (std::vector<leases::Resource>{{manifest_digest, "content"}}));
  }
  EXPECT_EQ(root->labels["containerd.io/gc.ref.content.config"], config_digest);

  // imaged: the record, pointing at the manifest.
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<images::Image> image = images.Get(Ctx(), Reference(kTag));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->target.digest.ToString(), manifest_digest);
  EXPECT_EQ(image->target.media_type, index["manifests"][0]["mediaType"]);
  EXPECT_EQ(image->target.size, static_cast<int64_t>(LayoutBlob(manifest_digest).size()));

  // snapshotd: the chain (containerd's ChainID, computed here from the config), committed;
  // a view of its top mounted shows /hello.
  std::string chain = TopChainId(config);
  snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
  absl::StatusOr<snapshots::Info> top = snapshotter.Stat(Ctx(), chain);
  ASSERT_TRUE(top.ok()) << chain << ": " << top.status() << snapshotd_.ReadLog();
  EXPECT_EQ(top->kind, snapshots::Kind::kCommitted);
  absl::StatusOr<std::vector<mount::Mount>> mounts =
      snapshotter.View(Ctx(), "pull-test-view", chain, {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  std::string target = dir_.Join("mnt");
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  ASSERT_TRUE(mount::SystemMounter().MountAll(*mounts, target).ok());
  struct stat st {};
  EXPECT_EQ(::stat((target + "/hello").c_str(), &st), 0) << "no /hello in the unpacked image";
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_TRUE(mount::SystemMounter().Unmount(target).ok());
  EXPECT_TRUE(snapshotter.Remove(Ctx(), "pull-test-view").ok());

  ExpectNoLease();

  // Again: everything is there; nothing is downloaded; the same record.
  CommandResult again = Berth({"pull", Reference(kTag), "--insecure-registry", registry_.host()});
  ASSERT_EQ(again.exit_code, 0) << again.output << imaged_.ReadLog();
  for (const std::string& digest : blobs) {
    EXPECT_TRUE(absl::StrContains(again.output, digest + " exists")) << digest << again.output;
  }
  EXPECT_FALSE(absl::StrContains(again.output, "downloading")) << again.output;
  EXPECT_TRUE(absl::StrContains(again.output, manifest_digest)) << again.output;
  ExpectNoLease();
}

TEST_F(PullTest, ProgressIsDrawnOnATerminalAsLinesThroughAPipeAndAsJson) {
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
  const std::string manifest_digest = index["manifests"][0]["digest"];
  nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(manifest_digest));
  const std::string layer = manifest["layers"][0]["digest"];
  const std::string short_layer = layer.substr(7, 12);  // "sha256:" dropped, as docker shows it
  const std::vector<std::string> args = {testing::BinaryPath("tools/berth/berth"),
                                         "--imaged-address", address_, "--timeout", "120s",
                                         "pull", Reference(kTag), "--insecure-registry",
                                         registry_.host()};

  // On a terminal: each blob's line cleared and rewritten, the cursor moved back up over the
  // drawing for each redraw, a bar while the layer downloads, its final state, a summary.
  CommandResult drawn = RunInTerminal(args, 120, 40);
  ASSERT_EQ(drawn.exit_code, 0) << drawn.output << imaged_.ReadLog();
  const std::string& tty = drawn.output;
  EXPECT_TRUE(absl::StrContains(tty, "\r\x1b[2K" + short_layer + ": downloading [")) << tty;
  EXPECT_TRUE(absl::StrContains(tty, "\r\x1b[2K" + short_layer + ": done")) << tty;
  size_t up = tty.find("\x1b[");
  bool cursor_up = false;
  for (; up != std::string::npos && !cursor_up; up = tty.find("\x1b[", up + 1)) {
    size_t end = tty.find_first_not_of("0123456789", up + 2);
    cursor_up = end != std::string::npos && end > up + 2 && tty[end] == 'A';
  }
  EXPECT_TRUE(cursor_up) << tty;
  const std::string summary = absl::StrCat(manifest["layers"].size() + 2, " blobs (");
  EXPECT_TRUE(absl::StrContains(tty, summary)) << tty;
  EXPECT_TRUE(absl::StrContains(tty, "transferred in")) << tty;
  const std::string pulled_line = absl::StrCat("pulled ", Reference(kTag), " ", manifest_digest);
  EXPECT_TRUE(absl::StrContains(tty, pulled_line)) << tty;

  // Through a pipe: one plain line per state change, not one escape.
  CommandResult plain = Berth({"pull", Reference(kTag), "--insecure-registry", registry_.host()});
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_FALSE(absl::StrContains(plain.output, "\x1b")) << plain.output;
  EXPECT_TRUE(absl::StrContains(plain.output, layer + " exists ")) << plain.output;
  EXPECT_TRUE(absl::StrContains(plain.output, pulled_line + "\n")) << plain.output;

  // --json: an object a line, the last one the image.
  CommandResult json =
      Berth({"--json", "pull", Reference(kTag), "--insecure-registry", registry_.host()});
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_FALSE(absl::StrContains(json.output, "\x1b")) << json.output;
  std::vector<nlohmann::json> events;
  for (absl::string_view line : absl::StrSplit(json.output, '\n', absl::SkipEmpty())) {
    events.push_back(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
    ASSERT_TRUE(events.back().is_object()) << line;
  }
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back().value("name", ""), Reference(kTag)) << json.output;
  EXPECT_EQ(events.back().value("digest", ""), manifest_digest) << json.output;
  bool layer_seen = false;
  for (const nlohmann::json& event : events) {
    layer_seen = layer_seen || (event.value("digest", "") == layer &&
                                event.value("state", "") == "exists");
  }
  EXPECT_TRUE(layer_seen) << json.output;
}

TEST_F(PullTest, UnknownTagIsNotFoundAndLeavesNoRecordAndNoLease) {
  CommandResult pull = Berth({"pull", Reference("nope"), "--insecure-registry", registry_.host()});
  EXPECT_EQ(pull.exit_code, 1) << pull.output;
  EXPECT_TRUE(absl::StrContains(pull.output, "MANIFEST_UNKNOWN")) << pull.output;

  // The code on the wire, through the stub.
  auto stub = distribution::v1::Distribution::NewStub(Dial(address_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  distribution::v1::PullRequest request;
  request.set_reference(Reference("nope"));
  request.set_unpack(true);
  request.add_plain_http_hosts(registry_.host());
  auto reader = stub->Pull(&context, request);
  distribution::v1::PullProgress message;
  while (reader->Read(&message)) {
  }
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();

  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<std::vector<images::Image>> all = images.List(Ctx(), {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->empty());
  ExpectNoLease();
}

TEST_F(PullTest, MetricsCountBlobsBytesPullsAndRegistryRequests) {
  // imaged again, with --metrics-address.
  imaged_.Stop(absl::Seconds(20));
  int port = testing::FreeTcpPort();
  absl::Status started =
      stack_.StartImaged({"--metrics-address", absl::StrCat("127.0.0.1:", port)});
  ASSERT_TRUE(started.ok()) << started << imaged_.ReadLog();
  ASSERT_TRUE(testing::WaitForTcpPort(port, absl::Seconds(20))) << "no /metrics on " << port;
  auto scrape = [port] {
    long code = 0;
    std::string body = HttpGet(port, "/metrics", &code);
    EXPECT_EQ(code, 200) << body;
    return body;
  };
  const std::string fetched = "result=\"fetched\"";
  const std::string skipped = "result=\"skipped\"";
  const std::string host = absl::StrCat("host=\"", registry_.host(), "\"");

  // The first pull downloads every blob of the layout: manifest, config, layers.
  CommandResult pull = Berth({"pull", Reference(kTag), "--insecure-registry", registry_.host()});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
  std::string manifest_digest = index["manifests"][0]["digest"];
  nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(manifest_digest));
  std::vector<std::string> blobs = {manifest_digest, manifest["config"]["digest"]};
  for (const nlohmann::json& layer : manifest["layers"]) {
    blobs.push_back(layer["digest"]);
  }
  double bytes = 0;
  for (const std::string& digest : blobs) {
    bytes += static_cast<double>(LayoutBlob(digest).size());
  }
  const double count = static_cast<double>(blobs.size());
  std::string text = scrape();
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_bytes_downloaded_total"), bytes) << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_blobs_total", {fetched}), count) << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_blobs_total", {skipped}), 0) << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_duration_seconds_count", {"result=\"ok\""}), 1)
      << text;
  double ok_requests =
      MetricValue(text, "berth_imaged_registry_requests_total", {host, "status=\"200\""});
  EXPECT_GT(ok_requests, 0) << text;

  // The second finds every blob in contentd: skipped, no more bytes; more requests (resolve).
  CommandResult again = Berth({"pull", Reference(kTag), "--insecure-registry", registry_.host()});
  ASSERT_EQ(again.exit_code, 0) << again.output << imaged_.ReadLog();
  text = scrape();
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_bytes_downloaded_total"), bytes) << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_blobs_total", {fetched}), count) << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_blobs_total", {skipped}), count) << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_duration_seconds_count", {"result=\"ok\""}), 2)
      << text;
  EXPECT_GT(MetricValue(text, "berth_imaged_registry_requests_total", {host, "status=\"200\""}),
            ok_requests)
      << text;

  // An unknown tag: a pull observed as an error, the registry's 404 counted.
  CommandResult nope = Berth({"pull", Reference("nope"), "--insecure-registry", registry_.host()});
  EXPECT_EQ(nope.exit_code, 1) << nope.output;
  text = scrape();
  EXPECT_EQ(
      MetricValue(text, "berth_imaged_pull_duration_seconds_count", {"result=\"error\""}), 1)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_pull_duration_seconds_count", {"result=\"ok\""}), 2)
      << text;
  EXPECT_GT(MetricValue(text, "berth_imaged_registry_requests_total", {host, "status=\"404\""}),
            0)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_imaged_registry_requests_total", {"status=\"error\""}), -1)
      << text;
}

TEST_F(PullTest, KilledMidPullLeavesNoRecordNoLeaseAndTheNextPullCompletes) {
  // The test image plus a 32 MiB layer of random bytes, so the download takes a moment.
  std::string big = dir_.Join("big-layout");
  ASSERT_TRUE(MakeTestImage(big, "big").ok());
  int code = 0;
  std::string random = dir_.Join("random");
  std::string out = testing::RunCommand(
      {"dd", "if=/dev/urandom", absl::StrCat("of=", random), "bs=1M", "count=32"}, &code);
  ASSERT_EQ(code, 0) << out;
  out = testing::RunCommand({"umoci", "insert", "--image", big + ":big", random, "/random"},
                            &code);
  ASSERT_EQ(code, 0) << out;
  out = testing::RunCommand({"umoci", "gc", "--layout", big}, &code);
  ASSERT_EQ(code, 0) << out;
  absl::Status pushed = registry_.Push(big, "big", kRepo);
  ASSERT_TRUE(pushed.ok()) << pushed;

  // Pull through the stub; SIGKILL imaged once contentd holds part of the big layer.
  nlohmann::json index = nlohmann::json::parse(*ReadFile(big + "/index.json"));
  std::string manifest_digest = index["manifests"][0]["digest"];
  nlohmann::json manifest = nlohmann::json::parse(*ReadFile(
      big + "/blobs/sha256/" + manifest_digest.substr(7)));
  std::string big_layer = manifest["layers"].back()["digest"];
  int64_t big_size = manifest["layers"].back()["size"];
  {
    auto stub = distribution::v1::Distribution::NewStub(Dial(address_));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    distribution::v1::PullRequest request;
    request.set_reference(Reference("big"));
    request.set_unpack(true);
    request.add_plain_http_hosts(registry_.host());
    auto reader = stub->Pull(&context, request);
    distribution::v1::PullProgress message;
    content::GrpcContentStore watched(Dial(contentd_.address()));
    auto held_in_contentd = [&] {
      absl::StatusOr<std::vector<content::IngestStatus>> now = watched.ListStatuses(Ctx(), {});
      for (const content::IngestStatus& ingest : now.ok() ? *now : std::vector<content::IngestStatus>{}) {
        if (ingest.expected.ToString() == big_layer) {
          return ingest.offset;
        }
      }
      return int64_t{0};
    };
    bool killed = false;
    while (!killed && reader->Read(&message)) {
      for (const distribution::v1::BlobProgress& blob : message.blobs()) {
        if (blob.digest() == big_layer &&
            blob.state() == distribution::v1::BlobProgress::DOWNLOADING) {
          // The registry sends faster than progress arrives: ask contentd itself.
          ASSERT_TRUE(testing::WaitFor([&] { return held_in_contentd() > 0; }, absl::Seconds(30)));
          ASSERT_EQ(::kill(imaged_.pid(), SIGKILL), 0);
          killed = true;
          break;
        }
      }
    }
    ASSERT_TRUE(killed) << "no DOWNLOADING of " << big_layer << imaged_.ReadLog();
    while (reader->Read(&message)) {
    }
    EXPECT_FALSE(reader->Finish().ok());
  }
  imaged_.Kill();  // reaps it

  // The partial download is contentd's, still under the dead pull's lease.
  content::GrpcContentStore content(Dial(contentd_.address()));
  absl::StatusOr<std::vector<content::IngestStatus>> ingests = content.ListStatuses(Ctx(), {});
  ASSERT_TRUE(ingests.ok()) << ingests.status();
  int64_t partial = 0;
  for (const content::IngestStatus& ingest : *ingests) {
    if (ingest.expected.ToString() == big_layer) {
      partial = ingest.offset;
    }
  }
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  absl::StatusOr<std::vector<leases::Lease>> held = leases.List(Ctx(), {});
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].labels["berth.io/pull"], Reference("big"));

  ASSERT_GT(partial, 0);
  ASSERT_LT(partial, big_size) << "the big layer was complete before imaged was killed";

  // Back: the dead pull's lease released at start, no record; its partial layer kept, unleased.
  ASSERT_TRUE(stack_.StartImaged().ok()) << imaged_.ReadLog();
  EXPECT_TRUE(absl::StrContains(imaged_.ReadLog(), (*held)[0].id)) << imaged_.ReadLog();
  ExpectNoLease();
  ingests = content.ListStatuses(Ctx(), {});
  ASSERT_TRUE(ingests.ok()) << ingests.status();
  int64_t kept = 0;
  for (const content::IngestStatus& ingest : *ingests) {
    if (ingest.expected.ToString() == big_layer) {
      kept = ingest.offset;
    }
  }
  EXPECT_EQ(kept, partial) << contentd_.ReadLog();
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<std::vector<images::Image>> all = images.List(Ctx(), {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->empty());

  // The next pull completes: the record at the manifest, every blob at its layout size, the
  // chain committed, no lease.
  CommandResult pull = Berth({"pull", Reference("big"), "--insecure-registry", registry_.host()});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  absl::StatusOr<images::Image> image = images.Get(Ctx(), Reference("big"));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->target.digest.ToString(), manifest_digest);
  std::string config_digest = manifest["config"]["digest"];
  std::vector<std::string> blobs = {manifest_digest, config_digest};
  for (const nlohmann::json& layer : manifest["layers"]) {
    blobs.push_back(layer["digest"]);
  }
  for (const std::string& digest : blobs) {
    absl::StatusOr<content::Info> info = content.GetInfo(Ctx(), *Digest::Parse(digest));
    ASSERT_TRUE(info.ok()) << digest << ": " << info.status();
    EXPECT_EQ(info->size,
              static_cast<int64_t>(ReadFile(big + "/blobs/sha256/" + digest.substr(7))->size()));
  }
  nlohmann::json config = nlohmann::json::parse(
      *ReadFile(big + "/blobs/sha256/" + config_digest.substr(7)));
  std::string chain = TopChainId(config);
  snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
  absl::StatusOr<snapshots::Info> top = snapshotter.Stat(Ctx(), chain);
  ASSERT_TRUE(top.ok()) << chain << ": " << top.status() << snapshotd_.ReadLog();
  EXPECT_EQ(top->kind, snapshots::Kind::kCommitted);
  ExpectNoLease();
  // The second pull asked only for what contentd lacked: one GET of the big layer answered 206
  // (Range from the ingest's offset) with the rest of its bytes.
  EXPECT_EQ(CountRegistryLines({big_layer, "response completed", "http.response.status=206",
                                absl::StrCat("http.response.written=", big_size - partial)}),
            1)
      << "partial " << partial << " of " << big_size << "\n" << registry_.ReadLog();
}

}  // namespace
}  // namespace berth::integration
