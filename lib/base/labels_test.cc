#include "lib/base/labels.h"

#include <string>

#include <gtest/gtest.h>

namespace berth {
namespace {

TEST(LabelsTest, ValidateAllowsUpTo4096BytesPerPair) {
  EXPECT_TRUE(ValidateLabels({}).ok());
  EXPECT_TRUE(ValidateLabels({{"k", std::string(4095, 'v')}}).ok());
  absl::Status st = ValidateLabels({{"longkey-abcdef", std::string(4096, 'v')}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "label key and value greater than maximum size (4096 bytes), key: longkey-ab");
}

TEST(LabelsTest, EmptyFieldpathsOrLabelsReplaceAll) {
  LabelMap current = {{"a", "1"}, {"b", "2"}};
  ASSERT_TRUE(ApplyLabelUpdate(&current, {{"c", "3"}, {"d", ""}}, {}, "thing x").ok());
  EXPECT_EQ(current, (LabelMap{{"c", "3"}}));
  ASSERT_TRUE(ApplyLabelUpdate(&current, {{"e", "5"}}, {"labels"}, "thing x").ok());
  EXPECT_EQ(current, (LabelMap{{"e", "5"}}));
}

TEST(LabelsTest, FieldpathSetsOrRemovesOneKey) {
  LabelMap current = {{"a", "1"}, {"b", "2"}};
  ASSERT_TRUE(
      ApplyLabelUpdate(&current, {{"b", "3"}, {"c", "4"}}, {"labels.b", "labels.a"}, "x").ok());
  EXPECT_EQ(current, (LabelMap{{"b", "3"}}));
  ASSERT_TRUE(ApplyLabelUpdate(&current, {{"b", ""}}, {"labels.b"}, "x").ok());
  EXPECT_TRUE(current.empty());
}

TEST(LabelsTest, RejectsOtherPathsAndOversizedResultsWithoutChanging) {
  LabelMap current = {{"a", "1"}};
  absl::Status st = ApplyLabelUpdate(&current, {{"b", "2"}}, {"labels.b", "name"}, "snapshot k");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "cannot update \"name\" field on snapshot k");
  EXPECT_EQ(current, (LabelMap{{"a", "1"}}));

  st = ApplyLabelUpdate(&current, {{"x", std::string(5000, 'v')}}, {}, "snapshot k");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(current, (LabelMap{{"a", "1"}}));
}

}  // namespace
}  // namespace berth
