// What a well-behaved registry never does, scripted with an HttpTestServer: bytes that do not
// match their digest, more bytes than the descriptor says, a manifest over 4 MiB, 500s, a
// connection dropped mid-blob, and no registry at all.

#include <gtest/gtest.h>

#include <atomic>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "integration/http_test_server.h"
#include "integration/registry_test_util.h"

namespace berth::integration {
namespace {

constexpr char kBlob[] = "the bytes of a layer, long enough to be cut in two";

oci::Descriptor BlobDesc(const std::string& data) {
  oci::Descriptor desc;
  desc.media_type = "application/vnd.oci.image.layer.v1.tar";
  desc.digest = Sha256Of(data);
  desc.size = static_cast<int64_t>(data.size());
  return desc;
}

std::string Host(const HttpTestServer& server) { return absl::StrCat("127.0.0.1:", server.port()); }

absl::Status Fetch(const HttpTestServer& server, const oci::Descriptor& desc, StringSink* sink) {
  return Client(Host(server), PlainHttp())
      ->FetchBlob(Ctx(), Ref(Host(server), ":v1"), desc, sink);
}

TEST(RegistryFaultsTest, BlobWhoseBytesDoNotMatchItsDigestIsRefused) {
  std::string wrong = kBlob;
  wrong[0] = 'T';
  HttpTestServer server([&](const HttpTestRequest&) { return HttpText(200, {}, wrong); });
  StringSink sink;
  absl::Status status = Fetch(server, BlobDesc(kBlob), &sink);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), Sha256Of(wrong).ToString())) << status;
}

TEST(RegistryFaultsTest, MoreBytesThanTheDescriptorAreCutAtTheFirstOneTooMany) {
  std::string more = std::string(kBlob) + "and then some";
  // Announced honestly (refused before reading), and with no length at all (the body runs to
  // the close), cut while streaming at the first byte past the descriptor's size.
  for (int64_t length : {static_cast<int64_t>(more.size()), int64_t{-2}}) {
    HttpTestServer server([&](const HttpTestRequest&) {
      if (length == -2) {
        return std::string("HTTP/1.1 200 X\r\nConnection: close\r\n\r\n") + more;
      }
      return HttpText(200, {}, more, length);
    });
    StringSink sink;
    absl::Status status = Fetch(server, BlobDesc(kBlob), &sink);
    ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "larger")) << status;
    EXPECT_LE(sink.data().size(), sizeof(kBlob) - 1);
  }
}

TEST(RegistryFaultsTest, DroppedConnectionIsResumedWithRange) {
  const std::string blob = kBlob;
  const size_t half = blob.size() / 2;
  HttpTestServer server([&](const HttpTestRequest& req) {
    auto range = req.headers.find("range");
    if (range == req.headers.end()) {
      // Announce everything, send half, hang up.
      return HttpText(200, {}, blob.substr(0, half), static_cast<int64_t>(blob.size()));
    }
    size_t from = std::stoul(range->second.substr(6));
    return HttpText(206, {absl::StrCat("Content-Range: bytes ", from, "-", blob.size() - 1, "/",
                                       blob.size())},
                    blob.substr(from));
  });
  StringSink sink;
  absl::Status status = Fetch(server, BlobDesc(blob), &sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.data(), blob);
  std::vector<HttpTestRequest> requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].headers["range"], absl::StrCat("bytes=", half, "-"));
}

TEST(RegistryFaultsTest, ServerErrorsAreRetriedUntilTheRegistryRecovers) {
  std::atomic<int> calls{0};
  HttpTestServer server([&](const HttpTestRequest&) {
    if (++calls <= 2) {
      return HttpText(calls == 1 ? 500 : 429, {}, "busy");
    }
    return HttpText(200, {}, kBlob);
  });
  StringSink sink;
  absl::Status status = Fetch(server, BlobDesc(kBlob), &sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.data(), kBlob);
  EXPECT_EQ(calls.load(), 3);
}

TEST(RegistryFaultsTest, ServerErrorsBeyondTheRetriesAreUnavailable) {
  HttpTestServer server([&](const HttpTestRequest&) { return HttpText(503, {}, "down"); });
  StringSink sink;
  absl::Status status = Fetch(server, BlobDesc(kBlob), &sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(server.requests().size(), 4u);  // max_attempts
}

TEST(RegistryFaultsTest, UnreachableRegistryIsUnavailable) {
  std::string host = absl::StrCat("127.0.0.1:", testing::FreeTcpPort());
  absl::StatusOr<Descriptor> desc = Client(host, PlainHttp())->Resolve(Ctx(), Ref(host, ":v1"));
  ASSERT_EQ(desc.status().code(), absl::StatusCode::kUnavailable) << desc.status();
  EXPECT_TRUE(absl::StrContains(desc.status().message(), host)) << desc.status();
}

TEST(RegistryFaultsTest, ManifestOver4MiBIsRefusedBeforeItIsRead) {
  const std::string manifest = R"({"schemaVersion":2})";
  HttpTestServer server([&](const HttpTestRequest&) {
    return HttpText(200, {absl::StrCat("Content-Type: ", images::kOciManifest)}, manifest,
                    images::kMaxDocumentSize + 1);
  });
  absl::StatusOr<Descriptor> desc =
      Client(Host(server), PlainHttp())->Resolve(Ctx(), Ref(Host(server), ":v1"));
  ASSERT_EQ(desc.status().code(), absl::StatusCode::kInvalidArgument) << desc.status();

  Descriptor big;
  big.media_type = std::string(images::kOciManifest);
  big.digest = Sha256Of(manifest);
  big.size = images::kMaxDocumentSize + 1;
  size_t before = server.requests().size();
  absl::StatusOr<RegistryClient::Document> doc =
      Client(Host(server), PlainHttp())->FetchManifest(Ctx(), Ref(Host(server), ":v1"), big);
  ASSERT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument) << doc.status();
  EXPECT_EQ(server.requests().size(), before);  // refused without asking
}

TEST(RegistryFaultsTest, ManifestWhoseDigestHeaderDisagreesWithItsBytesIsRefused) {
  const std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,)"
      R"("digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},)"
      R"("layers":[]})";
  HttpTestServer server([&](const HttpTestRequest& req) {
    if (req.method == "HEAD") {
      return HttpText(405, {}, "");  // no HEAD: the GET's bytes decide
    }
    return HttpText(200,
                    {absl::StrCat("Content-Type: ", images::kOciManifest),
                     absl::StrCat("Docker-Content-Digest: ", Sha256Of("other").ToString())},
                    manifest);
  });
  absl::StatusOr<Descriptor> desc =
      Client(Host(server), PlainHttp())->Resolve(Ctx(), Ref(Host(server), ":v1"));
  ASSERT_EQ(desc.status().code(), absl::StatusCode::kInvalidArgument) << desc.status();
  // And a reference by digest that the bytes do not match.
  desc = Client(Host(server), PlainHttp())
             ->Resolve(Ctx(), Ref(Host(server), "@" + Sha256Of("other").ToString()));
  EXPECT_EQ(desc.status().code(), absl::StatusCode::kInvalidArgument) << desc.status();
}

}  // namespace
}  // namespace berth::integration
