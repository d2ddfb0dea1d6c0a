#include "lib/filters/filter.h"

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::filters {
namespace {

using ::testing::HasSubstr;

struct Entry {
  std::string name;
  std::string other;
  std::map<std::string, std::string> labels;
};

// The corpus of containerd's filters/filter_test.go.
const std::vector<Entry>& Corpus() {
  static const auto* corpus = new std::vector<Entry>{
      {"foo", "", {{"foo", "true"}}},
      {"bar", "", {}},
      {"foo", "", {{"foo", "present"}, {"more complex label", "present"}}},
      {"bar", "", {{"bar", "true"}}},
      {"fooer", "", {{"more complex label with \\ and \"", "present"}}},
      {"fooer", "", {{"more complex label with \\ and \".post", "present"}}},
      {"baz", "too complex, yo", {}},
      {"bazo", "abc", {}},
      {"compound", "", {{"foo", "omg_asdf.asdf-qwer"}}},
  };
  return *corpus;
}

Adaptor Adapt(const Entry& e) {
  return MakeAdaptor(
      [&e](absl::string_view field) -> std::optional<std::string> {
        if (field == "name") {
          return e.name.empty() ? std::nullopt : std::optional<std::string>(e.name);
        }
        if (field == "other") {
          return e.other.empty() ? std::nullopt : std::optional<std::string>(e.other);
        }
        return std::nullopt;
      },
      &e.labels);
}

std::vector<int> Matching(const Filter& filter) {
  std::vector<int> out;
  for (size_t i = 0; i < Corpus().size(); ++i) {
    if (filter.Match(Adapt(Corpus()[i]))) {
      out.push_back(static_cast<int>(i));
    }
  }
  return out;
}

struct MatchCase {
  const char* name;
  const char* input;
  std::vector<int> expected;
};

class FilterMatchTest : public ::testing::TestWithParam<MatchCase> {};

TEST_P(FilterMatchTest, Matches) {
  const MatchCase& c = GetParam();
  absl::StatusOr<Filter> filter = Filter::Parse(c.input);
  ASSERT_TRUE(filter.ok()) << c.input << ": " << filter.status();
  EXPECT_EQ(Matching(*filter), c.expected) << c.input;
}

const std::vector<int> kAll = {0, 1, 2, 3, 4, 5, 6, 7, 8};

INSTANTIATE_TEST_SUITE_P(
    Containerd, FilterMatchTest,
    ::testing::Values(
        MatchCase{"Empty", "", kAll},
        MatchCase{"Blank", "   ", kAll},
        MatchCase{"Present", "name", kAll},
        MatchCase{"LabelPresent", "labels.foo", {0, 2, 8}},
        MatchCase{"NameAndLabelPresent", "labels.foo,name", {0, 2, 8}},
        MatchCase{"LabelValue", "labels.foo==true", {0}},
        MatchCase{"LabelValuePunctuated", "labels.foo==omg_asdf.asdf-qwer", {8}},
        MatchCase{"Name", "name==bar", {1, 3}},
        MatchCase{"NameNotEqual", "name!=bar", {0, 2, 4, 5, 6, 7, 8}},
        MatchCase{"NameAndLabelPresent2", "name==bar,labels.bar", {3}},
        MatchCase{"QuotedValue", "other==\"too complex, yo\"", {6}},
        MatchCase{"RegexpValue", "other~=[abc]+,name!=foo", {6, 7}},
        MatchCase{"RegexpQuotedValue", "other~=/[abc]+/,name!=foo", {6, 7}},
        MatchCase{"RegexpQuotedValueBraces", "other~=/[abc]{1,2}/,name!=foo", {6, 7}},
        MatchCase{"RegexpPipeQuoted", "other~=|[abc]{1,2}|,name!=foo", {6, 7}},
        MatchCase{"RegexpQuotedValueGarbage", "other~=/[abc]{0,1}\"\\//,name!=foo", {}},
        MatchCase{"NameAndLabelValue", "name==bar,labels.bar==true", {3}},
        MatchCase{"NameAndLabelValueNoMatch", "name==bar,labels.bar==wrong", {}},
        MatchCase{"LabelQuotedFieldPathPresent", "name==foo,labels.\"more complex label\"",
                  {2}},
        MatchCase{"LabelQuotedFieldPathPresentWithQuoted",
                  R"(labels."more complex label with \\ and \""==present)", {4}},
        MatchCase{"LabelQuotedFieldPathPresentWithQuotedEmbed",
                  R"(labels."more complex label with \\ and \"".post==present)", {5}},
        // berth additions.
        MatchCase{"SpacesAroundEverything", "  name == bar , labels . bar  ", {3}},
        MatchCase{"RegexpAnchored", "name~=^foo$", {0, 2}},
        MatchCase{"RegexpUnanchored", "name~=oo", {0, 2, 4, 5}},
        MatchCase{"NotEqualAbsentLabel", "labels.foo!=true", {1, 2, 3, 4, 5, 6, 7, 8}},
        MatchCase{"EqualEmptyQuoted", "other==\"\"", {}},
        MatchCase{"NotEqualEmptyQuoted", "other!=\"\"", {6, 7}},
        MatchCase{"RegexpOnAbsentIsEmpty", "other~=^$", {0, 1, 2, 3, 4, 5, 8}},
        MatchCase{"QuotedEscapes", R"(other=="too\x20complex,\u0020yo")", {6}},
        MatchCase{"OctalEscape", R"(name=="\142az")", {6}},
        MatchCase{"UnknownField", "nope", {}},
        MatchCase{"BareLabelsNotPresent", "labels", {}},
        MatchCase{"ValueWithEqualsAndSlash", "name==a=b/c", {}}),
    [](const ::testing::TestParamInfo<MatchCase>& info) { return info.param.name; });

struct ErrorCase {
  const char* name;
  const char* input;
  const char* reason;    // a substring of the message
  const char* position;  // "at position N"
};

class FilterErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(FilterErrorTest, IsInvalidArgument) {
  const ErrorCase& c = GetParam();
  absl::StatusOr<Filter> filter = Filter::Parse(c.input);
  ASSERT_FALSE(filter.ok()) << c.input;
  EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(filter.status().message()), HasSubstr(c.reason));
  EXPECT_THAT(std::string(filter.status().message()), HasSubstr(c.position));
  EXPECT_THAT(std::string(filter.status().message()), HasSubstr(c.input));
}

INSTANTIATE_TEST_SUITE_P(
    Containerd, FilterErrorTest,
    ::testing::Values(
        ErrorCase{"LabelValueNoAltQuoting", "labels.|foo|==omg_asdf.asdf-qwer",
                  "not allowed in a field name", "at position 7"},
        ErrorCase{"QuotedEmbedInvalid",
                  R"(labels.?"more complex label with \\ and \"".post==present)",
                  "expected a field name", "at position 7"},
        ErrorCase{"TrailingComma", "name==foo,", "expected a field name",
                  "at position 10 (end of input)"},
        ErrorCase{"TrailingFieldSeparator", "labels.", "expected a field name",
                  "at position 7 (end of input)"},
        ErrorCase{"MissingValue", "image~=,id?=?fbaq", "expected a value", "at position 7"},
        ErrorCase{"FieldSlash", "labels.ns/key==value", "unexpected '/' in a field name",
                  "at position 9"},
        ErrorCase{"ValueQuotedLiteralNotTerminated", "labels.key~=/value",
                  "quoted string not terminated", "at position 12"},
        ErrorCase{"SlashQuoteAfterEquals", "labels.key==/value/", "only allowed after ~=",
                  "at position 12"},
        // The brief's cases.
        ErrorCase{"LabelsDotOperator", "labels.==", "expected a field name", "at position 7"},
        ErrorCase{"UnterminatedQuote", "name==\"foo", "quoted string not terminated",
                  "at position 6"},
        ErrorCase{"UnterminatedQuotedField", "labels.\"foo", "quoted string not terminated",
                  "at position 7"},
        ErrorCase{"BadRegex", "name~=[abc", "invalid regular expression", "at position 6"},
        ErrorCase{"BadRegexQuoted", "name~=/(a/", "invalid regular expression",
                  "at position 6"},
        ErrorCase{"NoValue", "name==", "expected a value", "at position 6 (end of input)"},
        ErrorCase{"NoValueBeforeComma", "name==,labels.a", "expected a value",
                  "at position 6"},
        ErrorCase{"LeadingComma", ",name", "expected a field name", "at position 0"},
        ErrorCase{"DoubleComma", "name,,labels.a", "expected a field name", "at position 5"},
        ErrorCase{"SingleEquals", "name=foo", "unsupported operator \"=\"", "at position 4"},
        ErrorCase{"TripleEquals", "name===foo", "unsupported operator \"===\"",
                  "at position 4"},
        ErrorCase{"OperatorFirst", "==foo", "expected a field name", "at position 0"},
        ErrorCase{"TwoFields", "name foo", "expected an operator", "at position 5"},
        ErrorCase{"DashInField", "labels.app-name==x", "unexpected '-' in a field name",
                  "at position 10"},
        ErrorCase{"QuotedFieldThenGarbage", "labels.\"a\"b==x", "unexpected 'b'",
                  "at position 10"},
        ErrorCase{"TrailingGarbage", "name==foo bar", "expected ',' or the end",
                  "at position 10"},
        ErrorCase{"IllegalEscape", R"(name=="\q")", "illegal escape sequence",
                  "at position 7"},
        ErrorCase{"RegexEscapeInQuotes", R"(name~=/\d+/)", "illegal escape sequence",
                  "at position 7"},
        ErrorCase{"ShortHexEscape", R"(name=="\x4")", "hex digits", "at position 7"},
        ErrorCase{"BadOctalEscape", R"(name=="\19")", "octal", "at position 7"},
        ErrorCase{"OctalTooBig", R"(name=="\777")", "> 255", "at position 7"},
        ErrorCase{"Surrogate", R"(name=="\ud800")", "Unicode", "at position 7"},
        ErrorCase{"NewlineInQuote", "name==\"a\nb\"", "not terminated", "at position 6"},
        ErrorCase{"WrongEscapedQuote", R"(name=="a\/b")", "illegal escape", "at position 8"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(FilterTest, ErrorMessageShowsInputAndPosition) {
  absl::StatusOr<Filter> filter = Filter::Parse("labels.==");
  ASSERT_FALSE(filter.ok());
  EXPECT_EQ(filter.status().message(),
            "invalid filter \"labels.==\" at position 7 (near \"==\"): expected a field name "
            "([A-Za-z0-9_]+) or a quoted string");
}

TEST(FilterTest, DefaultAndEmptyMatchEverything) {
  Filter filter;
  EXPECT_TRUE(filter.MatchesEverything());
  EXPECT_TRUE(filter.Match(nullptr));
  EXPECT_TRUE(Filter::Parse("")->MatchesEverything());
  EXPECT_TRUE(Filter::ParseAll({})->MatchesEverything());
  EXPECT_FALSE(Filter::Parse("name")->MatchesEverything());
}

TEST(FilterTest, ParseAllIsDisjunction) {
  absl::StatusOr<Filter> filter = Filter::ParseAll({"name==bar", "labels.foo==true"});
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(Matching(*filter), (std::vector<int>{0, 1, 3}));

  filter = Filter::ParseAll({"name==bar,labels.bar", "other~=abc", "name==compound"});
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(Matching(*filter), (std::vector<int>{3, 7, 8}));

  filter = Filter::ParseAll({"name==zzz"});
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(Matching(*filter), (std::vector<int>{}));
}

TEST(FilterTest, ParseAllWithAnEmptyFilterMatchesEverything) {
  absl::StatusOr<Filter> filter = Filter::ParseAll({"name==zzz", ""});
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_TRUE(filter->MatchesEverything());
  EXPECT_EQ(Matching(*filter), kAll);
}

TEST(FilterTest, ParseAllReportsTheBadFilter) {
  absl::StatusOr<Filter> filter = Filter::ParseAll({"name==bar", "", "labels."});
  ASSERT_FALSE(filter.ok());
  EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(filter.status().message()), HasSubstr("\"labels.\""));
}

TEST(FilterTest, AdaptorSeesParsedFieldpath) {
  std::vector<std::string> seen;
  Adaptor adaptor = [&seen](const std::vector<std::string>& path) -> std::optional<std::string> {
    seen = path;
    return std::string("v");
  };
  ASSERT_TRUE(Filter::Parse(R"(labels."com.example/x".y=="v")")->Match(adaptor));
  EXPECT_EQ(seen, (std::vector<std::string>{"labels", "com.example/x", "y"}));
  ASSERT_TRUE(Filter::Parse("a_1.B2.3==v")->Match(adaptor));
  EXPECT_EQ(seen, (std::vector<std::string>{"a_1", "B2", "3"}));
}

TEST(FilterTest, EmptyAdaptorSeesNothing) {
  EXPECT_FALSE(Filter::Parse("name")->Match(nullptr));
  EXPECT_TRUE(Filter::Parse("name!=x")->Match(nullptr));
}

TEST(FilterTest, QuotedLabelKeyWithDotsAndSlashes) {
  std::map<std::string, std::string> labels = {{"com.example/x", "1"},
                                               {"containerd.io/gc.ref.content.0", "sha256:ab"}};
  Adaptor adaptor = MakeAdaptor(nullptr, &labels);
  EXPECT_TRUE(Filter::Parse(R"(labels."com.example/x"==1)")->Match(adaptor));
  EXPECT_TRUE(Filter::Parse(R"(labels."containerd.io/gc.ref.content.0")")->Match(adaptor));
  // Unquoted dotted keys are joined back with dots.
  std::map<std::string, std::string> dotted = {{"a.b.c", "x"}};
  EXPECT_TRUE(Filter::Parse("labels.a.b.c==x")->Match(MakeAdaptor(nullptr, &dotted)));
  EXPECT_FALSE(Filter::Parse("labels.a.b==x")->Match(MakeAdaptor(nullptr, &dotted)));
}

TEST(FilterTest, MakeAdaptorFields) {
  std::vector<std::string> asked;
  auto fields = [&asked](absl::string_view f) -> std::optional<std::string> {
    asked.emplace_back(f);
    if (f == "topic") {
      return std::string("/tasks/exit");
    }
    if (f == "target.digest") {
      return std::string("sha256:00");
    }
    return std::nullopt;
  };
  Adaptor adaptor = MakeAdaptor(fields, nullptr);
  EXPECT_TRUE(Filter::Parse(R"(topic=="/tasks/exit")")->Match(adaptor));
  EXPECT_TRUE(Filter::Parse("topic~=^/tasks/")->Match(adaptor));
  EXPECT_TRUE(Filter::Parse("target.digest==sha256:00")->Match(adaptor));
  EXPECT_FALSE(Filter::Parse("labels.x")->Match(adaptor));  // null labels: none present
  EXPECT_EQ(asked, (std::vector<std::string>{"topic", "topic", "target.digest"}));
}

TEST(FilterTest, FilterIsCopyableAndShared) {
  absl::StatusOr<Filter> parsed = Filter::Parse("name~=^ba");
  ASSERT_TRUE(parsed.ok());
  Filter copy = *parsed;
  parsed = Filter::Parse("name==nothing");
  EXPECT_EQ(Matching(copy), (std::vector<int>{1, 3, 6, 7}));
}

TEST(FilterTest, Utf8Values) {
  std::map<std::string, std::string> labels = {{"city", "Zürich"}};
  Adaptor adaptor = MakeAdaptor(nullptr, &labels);
  EXPECT_TRUE(Filter::Parse("labels.city==Zürich")->Match(adaptor));
  EXPECT_TRUE(Filter::Parse(R"(labels.city=="Z\u00fcrich")")->Match(adaptor));
  EXPECT_TRUE(Filter::Parse("labels.city~=^Z.rich$")->Match(adaptor));
}

}  // namespace
}  // namespace berth::filters
