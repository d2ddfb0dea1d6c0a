// contentd's Prometheus endpoint (--metrics-address): after some Content calls, GET /metrics
// shows per-method request counts and latency histograms, bytes ingested and what is stored.
// Metric names as services/contentd and lib/server register them.

#include <curl/curl.h>

#include <gtest/gtest.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "integration/harness.h"
#include "lib/base/grpc_client.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

namespace api = ::containerd::services::content::v1;
using ::berth::testing::TempDir;

constexpr char kNamespace[] = "metrics-test";
constexpr char kContent[] = "/containerd.services.content.v1.Content/";


class ContentdMetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void SetUp() override {
    port_ = testing::FreeTcpPort();
    Contentd::Options options;
    options.metrics_port = port_;
    contentd_ = std::make_unique<Contentd>(dir_.path(), options);
    absl::Status status = contentd_->Start();
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_TRUE(testing::WaitForTcpPort(port_, absl::Seconds(20)))
        << "metrics endpoint not listening on " << port_;
    stub_ = api::Content::NewStub(Dial(contentd_->address()));
  }

  void TearDown() override {
    stub_.reset();
    int status = contentd_->Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "contentd exit " << status;
    if (HasFailure()) {
      std::cerr << "contentd log:\n" << contentd_->ReadLog() << "\n";
    }
  }

  std::string Scrape() {
    long code = 0;
    std::string body = HttpGet(port_, "/metrics", &code);
    EXPECT_EQ(code, 200) << body;
    return body;
  }

  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Contentd> contentd_;
  std::unique_ptr<api::Content::Stub> stub_;
};

TEST_F(ContentdMetricsTest, ContentCallsShowUpInMetrics) {
  // Three blobs ingested, one deleted, plus reads and a failing Info.
  std::vector<std::string> blobs = {RandomBytes(1000, 1), RandomBytes(20000, 2),
                                    RandomBytes(300000, 3)};
  int64_t ingested = 0;
  std::vector<std::string> digests;
  for (size_t i = 0; i < blobs.size(); ++i) {
    absl::StatusOr<std::string> digest =
        CommitBlob(*stub_, kNamespace, absl::StrCat("metrics-", i), blobs[i]);
    ASSERT_TRUE(digest.ok()) << digest.status();
    digests.push_back(*digest);
    ingested += static_cast<int64_t>(blobs[i].size());
  }
  absl::Status status = DeleteBlob(*stub_, kNamespace, digests[0]);
  ASSERT_TRUE(status.ok()) << status;
  const int64_t stored_bytes = static_cast<int64_t>(blobs[1].size() + blobs[2].size());

  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", kNamespace);
    api::InfoRequest req;
    req.set_digest(digests[1]);
    api::InfoResponse resp;
    ASSERT_TRUE(stub_->Info(&ctx, req, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", kNamespace);
    api::InfoRequest req;
    req.set_digest(digests[0]);  // deleted
    api::InfoResponse resp;
    EXPECT_EQ(stub_->Info(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", kNamespace);
    auto reader = stub_->List(&ctx, api::ListContentRequest());
    api::ListContentResponse resp;
    while (reader->Read(&resp)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
  }

  std::string text;
  // The interceptor records a call when it completes, which can trail the client's view by a
  // moment: poll until the last call shows up.
  bool complete = testing::WaitFor(
      [&] {
        text = Scrape();
        return MetricValue(text, "berth_grpc_requests_total",
                     {absl::StrCat(kContent, "List\""), "code=\"OK\""}) >= 1;
      },
      absl::Seconds(10));
  ASSERT_TRUE(complete) << text;

  // Requests by method and code.
  EXPECT_EQ(MetricValue(text, "berth_grpc_requests_total", {absl::StrCat(kContent, "Write\"")}), 3)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_grpc_requests_total",
                  {absl::StrCat(kContent, "Info\""), "code=\"OK\""}),
            2)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_grpc_requests_total",
                  {absl::StrCat(kContent, "Info\""), "code=\"NotFound\""}),
            1)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_grpc_requests_total", {absl::StrCat(kContent, "Delete\"")}), 1)
      << text;

  // Latency histograms per method: buckets, a +Inf bucket equal to the count, a sum.
  std::string info_method = absl::StrCat("method=\"", kContent, "Info\"");
  EXPECT_FALSE(MetricSamples(text, "berth_grpc_request_duration_seconds_bucket", {info_method}).empty())
      << text;
  EXPECT_EQ(MetricValue(text, "berth_grpc_request_duration_seconds_bucket",
                  {info_method, "le=\"+Inf\""}),
            3)
      << text;
  EXPECT_EQ(MetricValue(text, "berth_grpc_request_duration_seconds_count", {info_method}), 3) << text;
  // Three calls took some time each (MetricValue is -1 when the sample is missing).
  EXPECT_GT(MetricValue(text, "berth_grpc_request_duration_seconds_sum", {info_method}), 0) << text;
  EXPECT_FALSE(MetricSamples(text, "berth_grpc_request_duration_seconds_bucket",
                       {absl::StrCat("method=\"", kContent, "Write\"")})
                   .empty())
      << text;

  // Content: bytes ingested (a counter: the deleted blob still counts) and what is stored.
  EXPECT_EQ(MetricValue(text, "berth_content_ingested_bytes_total"), static_cast<double>(ingested))
      << text;
  EXPECT_EQ(MetricValue(text, "berth_content_stored_blobs"), 2) << text;
  EXPECT_EQ(MetricValue(text, "berth_content_stored_bytes"), static_cast<double>(stored_bytes)) << text;

  // The exposition declares its types.
  EXPECT_TRUE(absl::StrContains(text, "# TYPE berth_grpc_requests_total counter")) << text;
  EXPECT_TRUE(absl::StrContains(text, "# TYPE berth_grpc_request_duration_seconds histogram"))
      << text;
}

}  // namespace
}  // namespace berth::integration
