#include "tools/berth/output.h"

#include <sstream>

#include "gtest/gtest.h"
#include "tools/berth/cli.h"

namespace berth::cli {
namespace {

TEST(HumanSizeTest, DecimalUnitsWithFourDigits) {
  EXPECT_EQ(HumanSize(0), "0B");
  EXPECT_EQ(HumanSize(999), "999B");
  EXPECT_EQ(HumanSize(1234), "1.234kB");
  EXPECT_EQ(HumanSize(5000000), "5MB");
  EXPECT_EQ(HumanSize(3145728), "3.146MB");
}

TEST(HumanDurationTest, RoughAges) {
  EXPECT_EQ(HumanDuration(absl::Milliseconds(300)), "Less than a second");
  EXPECT_EQ(HumanDuration(absl::Seconds(1)), "1 second");
  EXPECT_EQ(HumanDuration(absl::Seconds(42)), "42 seconds");
  EXPECT_EQ(HumanDuration(absl::Seconds(90)), "About a minute");
  EXPECT_EQ(HumanDuration(absl::Minutes(5)), "5 minutes");
  EXPECT_EQ(HumanDuration(absl::Minutes(61)), "About an hour");
  EXPECT_EQ(HumanDuration(absl::Hours(30)), "30 hours");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 3)), "3 days");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 21)), "3 weeks");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 100)), "3 months");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 365 * 3)), "3 years");
}

TEST(FormatTest, TimesAndLabels) {
  EXPECT_EQ(FormatTimestamp(absl::FromUnixSeconds(0)), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(absl::FromUnixMillis(1500)), "1970-01-01T00:00:01.5Z");
  EXPECT_EQ(FormatLabels({}), "-");
  EXPECT_EQ(FormatLabels({{"b", "2"}, {"a", "1"}}), "a=1,b=2");
}

TEST(TableTest, PadsAllButTheLastColumn) {
  Table table({"DIGEST", "SIZE", "LABELS"});
  table.AddRow({"sha256:abc", "1B", "a=1"});
  table.AddRow({"x", "100kB", "-"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "DIGEST      SIZE   LABELS\n"
            "sha256:abc  1B     a=1\n"
            "x           100kB  -\n");
}

TEST(ParseTest, Labels) {
  auto label = ParseLabel("k=v=w");
  ASSERT_TRUE(label.ok());
  EXPECT_EQ(label->first, "k");
  EXPECT_EQ(label->second, "v=w");
  label = ParseLabel("k=");
  ASSERT_TRUE(label.ok());
  EXPECT_EQ(label->second, "");
  EXPECT_TRUE(IsUsageError(ParseLabel("k=", false).status()));
  EXPECT_TRUE(IsUsageError(ParseLabel("novalue").status()));
  EXPECT_TRUE(IsUsageError(ParseLabel("=v").status()));

  auto labels = ParseLabels({"a=1", "b=2", "a=3"});
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(*labels, (std::map<std::string, std::string>{{"a", "3"}, {"b", "2"}}));
}

TEST(ParseTest, DurationsAndDigests) {
  auto d = ParseDurationArg("--timeout", "1m30s");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, absl::Seconds(90));
  d = ParseDurationArg("--timeout", "0");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, absl::ZeroDuration());
  EXPECT_TRUE(IsUsageError(ParseDurationArg("--timeout", "soon").status()));
  EXPECT_TRUE(IsUsageError(ParseDurationArg("--timeout", "-5s").status()));

  EXPECT_TRUE(IsUsageError(ParseDigestArg("sha256:zz").status()));
  EXPECT_TRUE(ParseDigestArg(Sha256Of("x").ToString()).ok());
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("from a daemon")));
}

}  // namespace
}  // namespace berth::cli
