#include "tools/berth/output.h"

#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tools/berth/cli.h"
#include "tools/berth/progress.h"

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


namespace pb = ::berth::distribution::v1;

pb::BlobProgress Blob(const std::string& hex, pb::BlobProgress::State state, int64_t offset) {
  pb::BlobProgress blob;
  blob.set_digest("sha256:" + hex);
  blob.set_state(state);
  blob.set_offset(offset);
  blob.set_total(4000000);
  return blob;
}

TEST(BlobProgressPrinterTest, TerminalRedrawsInPlaceWithinItsWidthThenSummarises) {
  std::ostringstream out;
  BlobProgressPrinter printer(BlobProgressPrinter::Mode::kTerminal, out, 40);
  const std::string a(64, 'a');
  const std::string b(64, 'b');
  printer.Print(Blob(a, pb::BlobProgress::WAITING, 0));
  printer.Print(Blob(b, pb::BlobProgress::EXISTS, 4000000));
  printer.Print(Blob(a, pb::BlobProgress::DOWNLOADING, 1000000));
  printer.Print(Blob(a, pb::BlobProgress::DONE, 4000000));
  printer.Finish();
  const std::string text = out.str();
  // The first drawing has one line; each later one moves up over the previous drawing.
  EXPECT_TRUE(absl::StartsWith(text, "\r\x1b[2Kaaaaaaaaaaaa: waiting")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\n\x1b[1A\r\x1b[2Kaaaaaaaaaaaa: waiting")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\n\x1b[2A\r\x1b[2Kaaaaaaaaaaaa: downloading")) << text;
  EXPECT_TRUE(absl::StrContains(text, "aaaaaaaaaaaa: downloading [=======>")) << text;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    size_t start = line.rfind("\x1b[2K");
    absl::string_view shown = start == absl::string_view::npos ? line : line.substr(start + 4);
    if (!absl::StrContains(shown, "blobs (")) {
      EXPECT_LE(shown.size(), 39u) << shown;
    }
  }
  EXPECT_TRUE(absl::StrContains(text, "\n2 blobs (1 done, 1 exists), 4MB transferred in ")) << text;
}

TEST(BlobProgressPrinterTest, LinesHaveNoEscapesAndOneLinePerStateChange) {
  std::ostringstream out;
  BlobProgressPrinter printer(BlobProgressPrinter::Mode::kLines, out, 0);
  const std::string a(64, 'a');
  printer.Print(Blob(a, pb::BlobProgress::DOWNLOADING, 0));
  printer.Print(Blob(a, pb::BlobProgress::DOWNLOADING, 1000));
  printer.Print(Blob(a, pb::BlobProgress::DONE, 4000000));
  printer.Finish();
  EXPECT_EQ(out.str(), "sha256:" + a + " downloading 4MB\nsha256:" + a + " done 4MB\n");
}

}  // namespace
}  // namespace berth::cli
