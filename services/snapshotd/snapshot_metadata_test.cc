#include "services/snapshotd/snapshot_metadata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lib/testing/testing.h"

namespace berth::snapshotd {
namespace {

using ::testing::ElementsAre;

TEST(MetaStoreTest, ChainsOfAnyDepthNearestFirst) {
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<MetaStore>> meta = MetaStore::Open(dir.Join("metadata.db"));
  ASSERT_TRUE(meta.ok()) << meta.status();
  int64_t parent = 0;
  std::vector<int64_t> ids;
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<int64_t> id = (*meta)->Insert("ns", "k" + std::to_string(i),
                                                 snapshots::Kind::kCommitted, parent, {},
                                                 absl::Now());
    ASSERT_TRUE(id.ok()) << id.status();
    ids.insert(ids.begin(), *id);
    parent = *id;
  }
  absl::StatusOr<std::vector<int64_t>> chain = (*meta)->Chain(parent);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(*chain, ids);
  absl::StatusOr<std::optional<SnapshotRecord>> top = (*meta)->Get("ns", "k299");
  ASSERT_TRUE(top.ok() && top->has_value());
  EXPECT_EQ((*top)->info.parent, "k298");
  EXPECT_EQ(*(*meta)->CountChildren(ids[1]), 1);
}

TEST(LabelsTest, EncodeDecodeAndUpdate) {
  snapshots::Labels labels = {{"a", "1"}, {"with \"quotes\"", "and\nnewline"}};
  absl::StatusOr<snapshots::Labels> back = DecodeLabels(EncodeLabels(labels));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, labels);
  EXPECT_EQ(DecodeLabels("not json").status().code(), absl::StatusCode::kDataLoss);

  snapshots::Labels current = {{"a", "1"}, {"b", "2"}};
  ASSERT_TRUE(ApplyLabelUpdate(&current, {{"b", "3"}, {"c", "4"}}, {"labels.b"}, "k").ok());
  EXPECT_EQ(current, (snapshots::Labels{{"a", "1"}, {"b", "3"}}));
  EXPECT_EQ(ApplyLabelUpdate(&current, {}, {"name"}, "k").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyLabelUpdate(&current, {{"x", std::string(5000, 'v')}}, {}, "k").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(current, (snapshots::Labels{{"a", "1"}, {"b", "3"}})) << "a failed update changes nothing";
}

}  // namespace
}  // namespace berth::snapshotd
