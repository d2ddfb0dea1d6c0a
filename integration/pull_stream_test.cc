// Pulls that unpack while they download (issue 10 item 5), and two pulls of one image at once,
// through the real imaged, contentd and snapshotd binaries. The registry is a slow one: an
// HttpTestServer serving an OCI layout made by umoci (four layers) the way the distribution
// spec says (manifests by tag and digest, blobs, Range), which holds the top layer's blob back
// until the test, reading the pull's progress stream, lets it go. So the ordering is shown by
// events, not timing:
// - a lower layer's apply begins (UNPACKING) while the top layer cannot have been downloaded,
//   and the pull then completes with the whole chain committed;
// - the top layer served with a wrong byte once a lower layer is committed: the pull fails with
//   the digest error, and no snapshot, no image record and no lease is left;
// - a caller that cancels once a lower layer is committed: every snapshot, the lease and the
//   record are gone (polled: imaged cleans up after the call ended);
// - two pulls of the image at once (the top layer slow): both complete and every layer is
//   fetched once.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "integration/harness.h"
#include "integration/http_test_server.h"
#include "integration/imaged_stack.h"
#include "integration/pull_test_util.h"
#include "integration/snapshotd_harness.h"
#include "lib/base/grpc_client.h"
#include "lib/base/posix.h"
#include "lib/images/grpc_image_store.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

namespace dv1 = ::berth::distribution::v1;

constexpr char kTag[] = "v1";

Context Ctx() {
  Context ctx;
  ctx.ns = "default";
  return ctx.WithTimeout(absl::Seconds(60));
}

// An OCI layout served as a registry (any repository name), with a hook that may hold back or
// rewrite a blob. Thread-safe.
class LayoutRegistry {
 public:
  // (digest, bytes) -> the bytes to send; runs on the request's own thread, may block.
  using BlobHook = std::function<std::string(const std::string&, std::string)>;

  explicit LayoutRegistry(std::string layout)
      : layout_(std::move(layout)),
        server_([this](const HttpTestRequest& req) { return Serve(req); }, /*concurrent=*/true) {}

  void SetHook(BlobHook hook) {
    absl::MutexLock lock(&mu_);
    hook_ = std::move(hook);
  }
  std::string host() const { return absl::StrCat("127.0.0.1:", server_.port()); }
  // GETs of /v2/.../blobs/<digest> so far.
  int BlobGets(const std::string& digest) const {
    int n = 0;
    for (const HttpTestRequest& req : server_.requests()) {
      n += req.method == "GET" && absl::EndsWith(req.path, "/blobs/" + digest) ? 1 : 0;
    }
    return n;
  }

 private:
  std::string Serve(const HttpTestRequest& req) {
    if (req.path == "/v2/" || req.path == "/v2") {
      return HttpText(200, {"Content-Type: application/json"}, "{}");
    }
    size_t manifests = req.path.find("/manifests/");
    size_t blobs = req.path.find("/blobs/");
    if (manifests != std::string::npos) {
      std::string object = req.path.substr(manifests + 11);
      nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
      for (const nlohmann::json& m : index["manifests"]) {
        std::string digest = m["digest"];
        if (object == digest || m["annotations"].value("org.opencontainers.image.ref.name", "") ==
                                    object) {
          return HttpText(200,
                          {absl::StrCat("Content-Type: ", m["mediaType"].get<std::string>()),
                           "Docker-Content-Digest: " + digest},
                          Blob(digest));
        }
      }
      return HttpText(404, {"Content-Type: application/json"},
                      R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]})");
    }
    if (blobs != std::string::npos) {
      std::string digest = req.path.substr(blobs + 7);
      std::string data = Blob(digest);
      BlobHook hook;
      {
        absl::MutexLock lock(&mu_);
        hook = hook_;
      }
      if (hook && req.method == "GET") {
        data = hook(digest, std::move(data));
      }
      auto range = req.headers.find("range");
      if (range != req.headers.end() && absl::StartsWith(range->second, "bytes=")) {
        size_t from = std::stoul(range->second.substr(6));
        return HttpText(206,
                        {absl::StrCat("Content-Range: bytes ", from, "-", data.size() - 1, "/",
                                      data.size())},
                        data.substr(from));
      }
      return HttpText(200, {"Content-Type: application/octet-stream"}, data);
    }
    return HttpText(404, {}, "");
  }

  std::string Blob(const std::string& digest) const {
    absl::StatusOr<std::string> data = ReadFile(layout_ + "/blobs/sha256/" + digest.substr(7));
    return data.ok() ? *data : std::string();
  }

  const std::string layout_;
  absl::Mutex mu_;
  BlobHook hook_ ABSL_GUARDED_BY(mu_);
  HttpTestServer server_;
};

// A notification that may be opened more than once (the test's and the stream's threads).
class Gate {
 public:
  // True for the call that opened it.
  bool Open() {
    absl::MutexLock lock(&mu_);
    if (open_.HasBeenNotified()) {
      return false;
    }
    open_.Notify();
    return true;
  }
  bool IsOpen() const { return open_.HasBeenNotified(); }
  // Waits until open (60 s at most: a test that failed must not hang its registry).
  void Wait() { open_.WaitForNotificationWithTimeout(absl::Seconds(60)); }

 private:
  absl::Mutex mu_;
  absl::Notification open_;
};

// One blob state change, as the pull stream reported it.
struct Seen {
  std::string digest;
  dv1::BlobProgress::State state;
};

class PullStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = dir_.Join("layout");
    ASSERT_TRUE(MakeTestImage(layout_, kTag).ok());
    for (int i = 0; i < 2; ++i) {  // two more layers of random bytes
      std::string file = dir_.Join(absl::StrCat("random", i));
      ASSERT_TRUE(WriteFileAtomic(file, RandomBytes(512 << 10, 7 + i), 0644).ok());
      int code = 0;
      std::string out = testing::RunCommand(
          {"umoci", "insert", "--image", layout_ + ":" + kTag, file, absl::StrCat("/r", i)},
          &code);
      ASSERT_EQ(code, 0) << out;
    }
    int code = 0;
    std::string out = testing::RunCommand({"umoci", "gc", "--layout", layout_}, &code);
    ASSERT_EQ(code, 0) << out;
    nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
    manifest_ = nlohmann::json::parse(*ReadFile(
        layout_ + "/blobs/sha256/" + index["manifests"][0]["digest"].get<std::string>().substr(7)));
    for (const nlohmann::json& layer : manifest_["layers"]) {
      layers_.push_back(layer["digest"]);
    }
    ASSERT_EQ(layers_.size(), 4u);
    registry_ = std::make_unique<LayoutRegistry>(layout_);

    ASSERT_TRUE(contentd_.Start().ok()) << contentd_.ReadLog();
    ASSERT_TRUE(snapshotd_.Start().ok()) << snapshotd_.ReadLog();
    std::vector<std::string> argv = {
        testing::BinaryPath("services/imaged/imaged"), "--root", dir_.Join("imaged-root"),
        "--state", dir_.Join("imaged-state"), "--address", address_, "--contentd-address",
        contentd_.address(), "--snapshotd-address", snapshotd_.address(), "--log-level",
        "debug"};
    absl::Status started = imaged_.StartServing("imaged", argv, address_);
    ASSERT_TRUE(started.ok()) << started;
  }

  std::string Reference() const { return absl::StrCat(registry_->host(), "/test/stream:", kTag); }
  const std::string& Top() const { return layers_.back(); }

  // Pulls through the Distribution stub; `on_event` sees each blob state change as it comes.
  grpc::Status Pull(const std::function<void(const Seen&)>& on_event,
                    grpc::ClientContext* cancel_me = nullptr) {
    auto stub = dv1::Distribution::NewStub(Dial(address_));
    grpc::ClientContext own;
    grpc::ClientContext& context = cancel_me != nullptr ? *cancel_me : own;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
    dv1::PullRequest request;
    request.set_reference(Reference());
    request.set_unpack(true);
    request.add_plain_http_hosts(registry_->host());
    auto reader = stub->Pull(&context, request);
    dv1::PullProgress message;
    while (reader->Read(&message)) {
      for (const dv1::BlobProgress& blob : message.blobs()) {
        on_event({blob.digest(), blob.state()});
      }
    }
    return reader->Finish();
  }

  std::vector<std::string> Snapshots() {
    snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
    std::vector<std::string> names;
    EXPECT_TRUE(snapshotter
                    .Walk(Ctx(), {},
                          [&](const snapshots::Info& info) {
                            names.push_back(info.name);
                            return absl::OkStatus();
                          })
                    .ok());
    return names;
  }

  std::string TopChainId() const {
    return integration::TopChainId(nlohmann::json::parse(*ReadFile(
        layout_ + "/blobs/sha256/" + manifest_["config"]["digest"].get<std::string>().substr(7))));
  }
  void ExpectNoLease() { ExpectNoLeaseIn(contentd_.address(), Ctx()); }

  testing::TempDir dir_;
  std::string layout_;
  nlohmann::json manifest_;
  std::vector<std::string> layers_;
  std::unique_ptr<LayoutRegistry> registry_;
  Contentd contentd_{dir_.path(), Contentd::Options{}};
  Snapshotd snapshotd_{dir_.path(), [this] {
                         Snapshotd::Options options;
                         options.contentd_address = contentd_.address();
                         return options;
                       }()};
  std::string address_ = dir_.Join("imaged.sock");
  DaemonProcess imaged_{dir_.path()};
};

TEST_F(PullStreamTest, ALowerLayersApplyBeginsBeforeTheTopLayerIsDownloaded) {
  Gate release;
  std::atomic<bool> released_by_event{false};
  registry_->SetHook([&](const std::string& digest, std::string data) {
    if (digest == Top()) {
      release.Wait();
    }
    return data;
  });
  std::vector<Seen> seen;
  grpc::Status status = Pull([&](const Seen& event) {
    seen.push_back(event);
    if (event.digest != Top() && event.state == dv1::BlobProgress::UNPACKING &&
        release.Open()) {
      released_by_event = true;
    }
  });
  release.Open();  // never leave the hook waiting
  ASSERT_TRUE(status.ok()) << status.error_message() << imaged_.ReadLog();
  EXPECT_TRUE(released_by_event.load())
      << "no layer began to unpack while the top layer was held back";

  // Per layer: verified, then unpacking, then done, in that order; the top one's verification
  // after some other layer's unpacking began.
  size_t first_unpacking = seen.size();
  for (const std::string& layer : layers_) {
    size_t verifying = seen.size(), unpacking = seen.size(), done = seen.size();
    for (size_t i = 0; i < seen.size(); ++i) {
      if (seen[i].digest != layer) {
        continue;
      }
      if (seen[i].state == dv1::BlobProgress::VERIFYING) verifying = i;
      if (seen[i].state == dv1::BlobProgress::UNPACKING) unpacking = i;
      if (seen[i].state == dv1::BlobProgress::DONE) done = i;
    }
    EXPECT_LT(verifying, unpacking) << layer;
    EXPECT_LT(unpacking, done) << layer;
    if (layer != Top()) {
      first_unpacking = std::min(first_unpacking, unpacking);
    } else {
      EXPECT_LT(first_unpacking, verifying) << "the top layer was in before any unpack began";
    }
  }

  snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
  absl::StatusOr<snapshots::Info> top = snapshotter.Stat(Ctx(), TopChainId());
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->kind, snapshots::Kind::kCommitted);
  EXPECT_EQ(Snapshots().size(), layers_.size());
  ExpectNoLease();
}

TEST_F(PullStreamTest, ATopLayerThatFailsAfterLowerOnesCommittedLeavesNothing) {
  Gate release;
  registry_->SetHook([&](const std::string& digest, std::string data) {
    if (digest == Top()) {
      release.Wait();
      data[data.size() / 2] ^= 0x55;  // same size, wrong digest
    }
    return data;
  });
  std::atomic<bool> committed_before{false};
  grpc::Status status = Pull([&](const Seen& event) {
    if (event.digest == layers_[0] && event.state == dv1::BlobProgress::DONE) {
      committed_before = release.Open();
    }
  });
  release.Open();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), Top())) << status.error_message();
  EXPECT_TRUE(committed_before.load()) << "the bottom layer was not committed before the failure";

  EXPECT_TRUE(Snapshots().empty()) << Snapshots().size() << " snapshots left, first "
                                   << Snapshots()[0];
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<std::vector<images::Image>> all = images.List(Ctx(), {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->empty());
  ExpectNoLease();
}

TEST_F(PullStreamTest, ACallerThatLeavesMidUnpackGetsEverythingRemoved) {
  Gate release;
  registry_->SetHook([&](const std::string& digest, std::string data) {
    if (digest == Top()) {
      release.Wait();
    }
    return data;
  });
  grpc::ClientContext context;
  grpc::Status status = Pull(
      [&](const Seen& event) {
        if (event.digest == layers_[0] && event.state == dv1::BlobProgress::DONE) {
          context.TryCancel();  // the bottom layer is committed, the top one held back
        }
      },
      &context);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  release.Open();
  // imaged sees the cancellation at its next check and drops the unpack: poll for the end.
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!Snapshots().empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(Snapshots().empty()) << Snapshots().size() << " snapshots left";
  while (absl::Now() < deadline) {
    leases::GrpcLeaseManager leases(Dial(contentd_.address()));
    absl::StatusOr<std::vector<leases::Lease>> list = leases.List(Ctx(), {});
    if (list.ok() && list->empty()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ExpectNoLease();
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<std::vector<images::Image>> all = images.List(Ctx(), {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->empty());
}

TEST_F(PullStreamTest, TwoPullsOfOneImageAtOnceShareEachDownload) {
  // The top layer is held until the second pull wants it too, and then for 3 s more: a slow
  // download, longer than contentd lets a second writer wait for the ingest's ref (about 1 s),
  // so the second pull must wait for the first one's download, not open its own.
  Gate release;
  registry_->SetHook([&](const std::string& digest, std::string data) {
    if (digest == Top()) {
      release.Wait();
      absl::SleepFor(absl::Seconds(3));
    }
    return data;
  });
  Gate first_waits;
  grpc::Status first_status;
  std::thread first([&] {
    first_status = Pull([&](const Seen& event) {
      if (event.digest == Top() && event.state == dv1::BlobProgress::DOWNLOADING) {
        first_waits.Open();
      }
    });
  });
  first_waits.Wait();
  EXPECT_TRUE(first_waits.IsOpen());
  std::vector<Seen> second_seen;
  grpc::Status second_status = Pull([&](const Seen& event) {
    second_seen.push_back(event);
    if (event.digest == Top() && event.state == dv1::BlobProgress::WAITING) {
      release.Open();
    }
  });
  release.Open();
  first.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message() << imaged_.ReadLog();
  ASSERT_TRUE(second_status.ok()) << second_status.error_message() << imaged_.ReadLog();
  for (const std::string& layer : layers_) {
    EXPECT_EQ(registry_->BlobGets(layer), 1) << layer;
  }
  bool top_exists = false;
  for (const Seen& event : second_seen) {
    top_exists = top_exists || (event.digest == Top() && event.state == dv1::BlobProgress::EXISTS);
    EXPECT_FALSE(event.digest == Top() && event.state == dv1::BlobProgress::DOWNLOADING);
  }
  EXPECT_TRUE(top_exists) << "the second pull did not take the first one's download";
  EXPECT_EQ(Snapshots().size(), layers_.size());
  ExpectNoLease();
}

}  // namespace
}  // namespace berth::integration
