#include "lib/server/block_writer.h"

#include <vector>

#include <gtest/gtest.h>

#include "containerd/services/content/v1/content.pb.h"

namespace berth::server {
namespace {

using Response = ::containerd::services::content::v1::ListContentResponse;

// Records each response's size; fails every write after `accept` of them.
class FakeWriter : public grpc::ServerWriterInterface<Response> {
 public:
  explicit FakeWriter(int accept = 1000) : accept_(accept) {}
  void SendInitialMetadata() override {}
  bool Write(const Response& response, grpc::WriteOptions) override {
    if (static_cast<int>(sizes.size()) >= accept_) {
      return false;
    }
    sizes.push_back(response.info_size());
    return true;
  }
  std::vector<int> sizes;

 private:
  int accept_;
};

absl::Status AddItems(BlockWriter<Response>& blocks, int n) {
  for (int i = 0; i < n; ++i) {
    if (absl::Status st = blocks.Add([&](Response& r) { r.add_info()->set_size(i); });
        !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

TEST(BlockWriterTest, WritesFullBlocksThenTheRest) {
  FakeWriter writer;
  BlockWriter<Response> blocks(&writer, "list", 3);
  ASSERT_TRUE(AddItems(blocks, 7).ok());
  EXPECT_EQ(writer.sizes, (std::vector<int>{3, 3}));
  ASSERT_TRUE(blocks.Flush().ok());
  EXPECT_EQ(writer.sizes, (std::vector<int>{3, 3, 1}));
}

TEST(BlockWriterTest, FlushWritesNothingWhenEmpty) {
  FakeWriter writer;
  BlockWriter<Response> blocks(&writer, "list");
  ASSERT_TRUE(AddItems(blocks, kListBlockSize).ok());
  ASSERT_TRUE(blocks.Flush().ok());
  EXPECT_EQ(writer.sizes, (std::vector<int>{kListBlockSize}));
}

TEST(BlockWriterTest, CancelledWhenTheClientGoesAway) {
  FakeWriter writer(/*accept=*/1);
  BlockWriter<Response> blocks(&writer, "list", 2);
  absl::Status st = AddItems(blocks, 4);
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(st.message(), "list: the client went away");
  EXPECT_EQ(blocks.Flush().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace berth::server
