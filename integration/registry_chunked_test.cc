// A large blob fetched as parallel Range chunks (lib/images/registry_chunked.h): against a real
// docker-registry (plain HTTP and TLS), and against a scripted server that drops a chunk,
// ignores Range, sends the wrong bytes or the wrong ranges.

#include <gtest/gtest.h>

#include <atomic>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "integration/harness.h"
#include "integration/http_test_server.h"
#include "integration/registry_test_util.h"

namespace berth::integration {
namespace {

constexpr int64_t kChunk = 32 << 10;

// 200 KiB that differ from chunk to chunk (7 chunks of 32 KiB, the last one shorter).
std::string MakeBlob() {
  std::string blob;
  uint32_t x = 12345;
  while (blob.size() < (200u << 10)) {
    x = x * 1103515245u + 12345u;
    blob.push_back(static_cast<char>(x >> 24));
  }
  return blob;
}

oci::Descriptor DescOf(const std::string& data) {
  return {"application/vnd.oci.image.layer.v1.tar+gzip", Sha256Of(data),
          static_cast<int64_t>(data.size()), {}};
}

// "bytes=a-b" or "bytes=a-": first and last byte (last: the blob's end when open).
bool ParseRange(const HttpTestRequest& req, int64_t size, int64_t* first, int64_t* last) {
  auto it = req.headers.find("range");
  if (it == req.headers.end()) {
    return false;
  }
  absl::string_view range = it->second;
  absl::ConsumePrefix(&range, "bytes=");
  size_t dash = range.find('-');
  *last = size - 1;
  return absl::SimpleAtoi(range.substr(0, dash), first) &&
         (range.substr(dash + 1).empty() || absl::SimpleAtoi(range.substr(dash + 1), last));
}

// What a registry honouring Range answers; `total` is what Content-Range says the size is.
std::string RangeAnswer(const std::string& blob, const HttpTestRequest& req, int64_t total = -1) {
  int64_t first = 0;
  int64_t last = 0;
  if (!ParseRange(req, static_cast<int64_t>(blob.size()), &first, &last)) {
    return HttpText(200, {}, blob);
  }
  return HttpText(206,
                  {absl::StrCat("Content-Range: bytes ", first, "-", last, "/",
                                total >= 0 ? total : static_cast<int64_t>(blob.size()))},
                  blob.substr(static_cast<size_t>(first), static_cast<size_t>(last - first + 1)));
}

std::string Host(const HttpTestServer& server) { return absl::StrCat("127.0.0.1:", server.port()); }

absl::Status FetchChunked(const HttpTestServer& server, const oci::Descriptor& desc,
                          StringSink* sink, int parallel = 3) {
  return ChunkedClient(Host(server), PlainHttp(), kChunk, parallel)
      ->FetchBlob(Ctx(), Ref(Host(server), ":v1"), desc, sink);
}

std::multiset<std::string> Ranges(const HttpTestServer& server) {
  std::multiset<std::string> ranges;
  for (HttpTestRequest& req : server.requests()) {
    ranges.insert(req.headers["range"]);
  }
  return ranges;
}

TEST(RegistryChunkedTest, BlobComesInParallelRangesByteIdenticalAndVerified) {
  const std::string blob = MakeBlob();
  // Each chunk after the first waits (up to 20 s once, not a timing assertion) until another
  // chunk's request is in the server at the same time: a client asking one at a time leaves
  // `overlapped` false.
  absl::Mutex mu;
  int inside = 0;
  bool overlapped = false;
  bool gave_up = false;  // one wait timed out: the others do not wait
  HttpTestServer server(
      [&](const HttpTestRequest& req) {
        if (req.headers.at("range") != absl::StrCat("bytes=0-", kChunk - 1)) {
          absl::MutexLock lock(&mu);
          ++inside;
          auto two = [&] { return inside >= 2 || overlapped || gave_up; };
          if (mu.AwaitWithTimeout(absl::Condition(&two), absl::Seconds(20))) {
            overlapped = overlapped || inside >= 2;
          } else {
            gave_up = true;
          }
          --inside;
        }
        return RangeAnswer(blob, req);
      },
      /*concurrent=*/true);
  StringSink sink;
  absl::Status status = FetchChunked(server, DescOf(blob), &sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.data(), blob);
  EXPECT_TRUE(overlapped);
  std::multiset<std::string> want;
  for (int64_t at = 0; at < static_cast<int64_t>(blob.size()); at += kChunk) {
    want.insert(absl::StrCat("bytes=", at, "-",
                             std::min<int64_t>(at + kChunk, blob.size()) - 1));
  }
  EXPECT_EQ(Ranges(server), want);  // each chunk asked for once, nothing else
}

TEST(RegistryChunkedTest, ADroppedChunkIsAskedAgainForTheRestOfIt) {
  const std::string blob = MakeBlob();
  const std::string dropped = absl::StrCat("bytes=", 2 * kChunk, "-", 3 * kChunk - 1);
  std::atomic<bool> dropped_once{false};
  HttpTestServer server(
      [&](const HttpTestRequest& req) {
        if (req.headers.at("range") == dropped && !dropped_once.exchange(true)) {
          // Announce the chunk, send half of it, hang up.
          std::string whole = RangeAnswer(blob, req);
          return whole.substr(0, whole.size() - kChunk / 2);
        }
        return RangeAnswer(blob, req);
      },
      /*concurrent=*/true);
  StringSink sink;
  absl::Status status = FetchChunked(server, DescOf(blob), &sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.data(), blob);
  EXPECT_EQ(Ranges(server).count(
                absl::StrCat("bytes=", 2 * kChunk + kChunk / 2, "-", 3 * kChunk - 1)),
            1u);
}

TEST(RegistryChunkedTest, ARegistryThatIgnoresRangeGetsOnePlainGet) {
  const std::string blob = MakeBlob();
  HttpTestServer server([&](const HttpTestRequest&) { return HttpText(200, {}, blob); });
  StringSink sink;
  absl::Status status = FetchChunked(server, DescOf(blob), &sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.data(), blob);
  EXPECT_EQ(server.requests().size(), 1u);  // the probe's 200 was the whole blob
}

TEST(RegistryChunkedTest, ARegistryThatStopsHonouringRangeIsFinishedWithout) {
  const std::string blob = MakeBlob();
  HttpTestServer server(
      [&](const HttpTestRequest& req) {
        if (req.headers.at("range") == absl::StrCat("bytes=0-", kChunk - 1)) {
          return RangeAnswer(blob, req);
        }
        return HttpText(200, {}, blob);
      },
      /*concurrent=*/true);
  StringSink sink;
  absl::Status status = FetchChunked(server, DescOf(blob), &sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.data(), blob);
}

TEST(RegistryChunkedTest, AChunkWithWrongBytesFailsTheWholeBlobsDigest) {
  const std::string blob = MakeBlob();
  std::string bad = blob;
  bad[4 * kChunk + 7] ^= 1;
  HttpTestServer server([&](const HttpTestRequest& req) { return RangeAnswer(bad, req); },
                        /*concurrent=*/true);
  StringSink sink;
  absl::Status status = FetchChunked(server, DescOf(blob), &sink);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), Sha256Of(bad).ToString())) << status;
}

TEST(RegistryChunkedTest, RangesThatDoNotFitTheBlobAreRefused) {
  const std::string blob = MakeBlob();
  const int64_t size = static_cast<int64_t>(blob.size());
  // A larger blob than the descriptor says; and a range other than the one asked for.
  HttpTestServer larger(
      [&](const HttpTestRequest& req) { return RangeAnswer(blob, req, size + 1); },
      /*concurrent=*/true);
  StringSink sink;
  absl::Status status = FetchChunked(larger, DescOf(blob), &sink);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), absl::StrCat(size + 1, " bytes"))) << status;
  EXPECT_EQ(sink.data().size(), 0u);

  HttpTestServer shifted(
      [&](const HttpTestRequest& req) {
        int64_t first = 0;
        int64_t last = 0;
        ParseRange(req, size, &first, &last);
        return HttpText(206, {absl::StrCat("Content-Range: bytes 0-", last - first, "/", size)},
                        blob.substr(0, static_cast<size_t>(last - first + 1)));
      },
      /*concurrent=*/true);
  StringSink shifted_sink;
  status = FetchChunked(shifted, DescOf(blob), &shifted_sink);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "asked for bytes")) << status;
}

// The real registry, plain and over TLS: every blob of the test image fetched in 16 KiB chunks
// is the layout's, and the registry served ranges (206 in its access log).
TEST(RegistryChunkedTest, RealRegistryServesChunkedBlobsPlainAndOverTls) {
  testing::TempDir dir;
  TestImage image = MakeImage(dir);
  testing::TestPki pki = testing::MakeTestPki(dir.Join(""));
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    Registry::Options options;
    if (tls) {
      options.tls_cert = pki.server_cert;
      options.tls_key = pki.server_key;
    }
    testing::TempDir registry_dir;
    Registry registry(registry_dir.path(), options);
    ASSERT_TRUE(registry.Start().ok()) << registry.ReadLog();
    ASSERT_TRUE(registry.Push(image.layout, kTag, kRepo).ok());
    RegistryHostConfig config = PlainHttp();
    if (tls) {
      config = RegistryHostConfig();
      config.ca_file = pki.ca;
    }
    ASSERT_GT(LargestLayer(image).size, 4 * (16 << 10));
    auto client = ChunkedClient(registry.host(), config, 16 << 10, 4);
    ExpectPullable(*client, registry.host(), image);
    EXPECT_TRUE(absl::StrContains(registry.ReadLog(), "http.response.status=206"))
        << registry.ReadLog();

    // One request at a time, every blob twice: all of it over one connection, which speaks
    // HTTP/2 over TLS (docker-registry offers h2 by ALPN) and HTTP/1.1 in plain text.
    absl::Mutex mu;
    std::vector<int> connections;  // the HTTP version of each new connection
    RegistryClientOptions sequential;
    sequential.hosts[registry.host()] = config;
    sequential.blob_chunk_size = 0;
    sequential.on_connection = [&](absl::string_view, int version) {
      absl::MutexLock lock(&mu);
      connections.push_back(version);
    };
    std::unique_ptr<RegistryClient> one = RegistryClient::Create(std::move(sequential));
    ExpectPullable(*one, registry.host(), image);
    ExpectPullable(*one, registry.host(), image);
    absl::MutexLock lock(&mu);
    EXPECT_EQ(connections, std::vector<int>{tls ? 2 : 1});
  }
}

}  // namespace
}  // namespace berth::integration
