// The registry client's transfer engine (lib/images/curl_engine.h, under RegistryHttp) against
// a real docker-registry: concurrent blobs over HTTP/2 share one connection; a consumer that
// blocks stalls only its own transfer, which is paused with at most `transfer_buffer` bytes
// held; a cancelled Context ends its own request while another completes; destroying the
// client mid-transfer ends its calls with an error.
//
// No timing: every wait is on what a transfer did (its first bytes, its end); the bounded waits
// only turn a deadlock (a consumer run on the loop thread) into a failure instead of a hang.

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "integration/harness.h"
#include "integration/registry_test_util.h"
#include "lib/images/registry_http.h"

namespace berth::integration {
namespace {

using images::HttpRequest;
using images::HttpResponse;
using images::RegistryHttp;

constexpr absl::Duration kDeadlock = absl::Seconds(30);
constexpr int64_t kBuffer = 64 << 10;

// A registry (TLS: HTTP/2 by ALPN, or plain HTTP/1.1) holding the test image.
struct Served {
  testing::TempDir dir;
  TestImage image;
  testing::TestPki pki;
  testing::TempDir registry_dir;
  std::unique_ptr<Registry> registry;
  RegistryHostConfig config;

  explicit Served(bool tls) : image(MakeImage(dir)), pki(testing::MakeTestPki(dir.Join(""))) {
    Registry::Options options;
    if (tls) {
      options.tls_cert = pki.server_cert;
      options.tls_key = pki.server_key;
      config.ca_file = pki.ca;
    } else {
      config = PlainHttp();
    }
    registry = std::make_unique<Registry>(registry_dir.path(), options);
    absl::Status started = registry->Start();
    EXPECT_TRUE(started.ok()) << started << registry->ReadLog();
    absl::Status pushed = registry->Push(image.layout, kTag, kRepo);
    EXPECT_TRUE(pushed.ok()) << pushed;
  }

  RegistryClientOptions Options() const {
    RegistryClientOptions options;
    options.initial_backoff = absl::Milliseconds(10);
    options.hosts[registry->host()] = config;
    options.transfer_buffer = kBuffer;
    return options;
  }

  // A GET of the blob, into `sink` through `on_data` (the sink's append when empty).
  HttpRequest BlobRequest(const oci::Descriptor& desc) const {
    HttpRequest req;
    req.host = registry->host();
    req.scope = absl::StrCat("repository:", kRepo, ":pull");
    req.url = absl::StrCat(config.plain_http ? "http://" : "https://", registry->host(), "/v2/",
                           kRepo, "/blobs/", desc.digest.ToString());
    return req;
  }
};

// Fetches the blob into *out through `req` on `http`; `first` (may be null) runs on the first
// piece, before it is taken.
absl::Status Fetch(RegistryHttp& http, const Context& ctx, HttpRequest req, std::string* out,
                   std::function<void()> first = nullptr) {
  req.on_data = [&, first](absl::string_view data) {
    if (out->empty() && first) {
      first();
    }
    out->append(data.data(), data.size());
    return absl::OkStatus();
  };
  absl::StatusOr<HttpResponse> resp = http.Do(ctx, std::move(req));
  if (!resp.ok()) {
    return resp.status();
  }
  if (!resp->write_status.ok()) {
    return resp->write_status;
  }
  if (resp->code != 200 || !resp->transfer_ok) {
    return absl::UnknownError(absl::StrCat("HTTP ", resp->code, " ", resp->transfer_error));
  }
  return absl::OkStatus();
}

// Four fetches of the largest layer held in flight together (each consumer waits on its first
// piece until all four have one) open one HTTP/2 connection between them: the streams of the
// connection Resolve opened. Without multiplexing each would need its own.
TEST(RegistryEngineTest, ConcurrentBlobsOverHttp2ShareOneConnection) {
  Served served(/*tls=*/true);
  absl::Mutex mu;
  std::vector<int> connections;
  RegistryClientOptions options = served.Options();
  options.on_connection = [&](absl::string_view, int version) {
    absl::MutexLock lock(&mu);
    connections.push_back(version);
  };
  RegistryHttp http(options);
  const oci::Descriptor layer = LargestLayer(served.image);
  const std::string want = served.image.Blob(layer.digest.ToString());
  constexpr int kFetches = 4;
  int arrived = 0;
  std::vector<std::string> got(kFetches);
  std::vector<absl::Status> results(kFetches);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFetches; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Fetch(http, Ctx(), served.BlobRequest(layer), &got[i], [&] {
        absl::MutexLock lock(&mu);
        ++arrived;
        auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return arrived == kFetches; };
        EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kDeadlock))
            << "only " << arrived << " of the fetches got bytes";
      });
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (int i = 0; i < kFetches; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i];
    EXPECT_EQ(got[i], want);
  }
  absl::MutexLock lock(&mu);
  EXPECT_EQ(connections, std::vector<int>{2}) << served.registry->ReadLog();
}

// A consumer that stops taking bytes (blocked until another blob has arrived whole) stalls only
// its own transfer: the engine pauses it with no more than transfer_buffer bytes held, and the
// other fetch, on the same connection (TLS, HTTP/2) or another (plain HTTP/1.1), completes.
TEST(RegistryEngineTest, BlockedConsumerIsPausedWhileAnotherTransferCompletes) {
  for (bool tls : {true, false}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    Served served(tls);
    RegistryHttp http(served.Options());
    const oci::Descriptor layer = LargestLayer(served.image);
    ASSERT_GT(layer.size, 3 * kBuffer);
    const std::string want = served.image.Blob(layer.digest.ToString());
    absl::Notification other_done;
    std::string blocked;
    absl::Status blocked_result;
    std::thread slow([&] {
      blocked_result = Fetch(http, Ctx(), served.BlobRequest(layer), &blocked, [&] {
        EXPECT_TRUE(other_done.WaitForNotificationWithTimeout(kDeadlock))
            << "the other fetch did not complete while this consumer blocked";
      });
    });
    std::string other;
    absl::Status other_result = Fetch(http, Ctx(), served.BlobRequest(layer), &other);
    other_done.Notify();
    slow.join();
    ASSERT_TRUE(other_result.ok()) << other_result;
    ASSERT_TRUE(blocked_result.ok()) << blocked_result;
    EXPECT_EQ(other, want);
    EXPECT_EQ(blocked, want);
    // The blocked transfer was paused, and nothing held more than the bound.
    EXPECT_GE(http.engine().pauses(), 1);
    EXPECT_LE(http.engine().buffered_high_water(), kBuffer);
    EXPECT_GT(http.engine().buffered_high_water(), 0);
  }
}

// A Context cancelled mid-blob (its consumer blocked, the transfer paused) ends that request with
// the Context's error, having taken part of the blob only, while another fetch on the same
// engine completes.
TEST(RegistryEngineTest, CancelledContextEndsItsRequestOnly) {
  Served served(/*tls=*/true);
  RegistryHttp http(served.Options());
  const oci::Descriptor layer = LargestLayer(served.image);
  const std::string want = served.image.Blob(layer.digest.ToString());
  auto cancel = std::make_shared<Cancellation>();
  Context ctx = Ctx();
  ctx.cancellation = cancel;
  absl::Notification started;
  absl::Notification cancelled;
  std::string partial;
  absl::Status partial_result;
  std::thread doomed([&] {
    partial_result = Fetch(http, ctx, served.BlobRequest(layer), &partial, [&] {
      started.Notify();
      EXPECT_TRUE(cancelled.WaitForNotificationWithTimeout(kDeadlock));
    });
  });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kDeadlock));
  std::string other;
  absl::Status other_result = Fetch(http, Ctx(), served.BlobRequest(layer), &other);
  cancel->Cancel();
  cancelled.Notify();
  doomed.join();
  EXPECT_EQ(partial_result.code(), absl::StatusCode::kCancelled) << partial_result;
  EXPECT_LT(partial.size(), want.size());
  ASSERT_TRUE(other_result.ok()) << other_result;
  EXPECT_EQ(other, want);
  // The engine goes on serving after the removal.
  std::string again;
  ASSERT_TRUE(Fetch(http, Ctx(), served.BlobRequest(layer), &again).ok());
  EXPECT_EQ(again, want);
}

// Destroying the client while two transfers are in flight (both consumers blocked, so both
// paused mid-blob) ends each with Unavailable, and the destructor returns.
TEST(RegistryEngineTest, DestroyingTheClientMidTransferFailsItsCalls) {
  Served served(/*tls=*/true);
  auto http = std::make_unique<RegistryHttp>(served.Options());
  const oci::Descriptor layer = LargestLayer(served.image);
  constexpr int kFetches = 2;
  absl::Mutex mu;
  int arrived = 0;
  absl::Notification release;
  std::vector<std::string> got(kFetches);
  std::vector<absl::Status> results(kFetches);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFetches; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Fetch(*http, Ctx(), served.BlobRequest(layer), &got[i], [&] {
        {
          absl::MutexLock lock(&mu);
          ++arrived;
        }
        EXPECT_TRUE(release.WaitForNotificationWithTimeout(kDeadlock));
      });
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return arrived == kFetches; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kDeadlock));
  }
  RegistryHttp* raw = http.get();
  std::thread destroyer([&] { http.reset(); });
  // The destructor stops the engine first, then waits for the calls: release the consumers once
  // it has (the object lives until they return).
  while (!raw->engine().stopped()) {
    std::this_thread::yield();
  }
  release.Notify();
  destroyer.join();
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (int i = 0; i < kFetches; ++i) {
    EXPECT_EQ(results[i].code(), absl::StatusCode::kUnavailable) << results[i];
    EXPECT_TRUE(absl::StrContains(results[i].message(), "shutting down")) << results[i];
    EXPECT_LT(got[i].size(), static_cast<size_t>(layer.size));
  }
}

}  // namespace
}  // namespace berth::integration
