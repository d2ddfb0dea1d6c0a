#include "lib/filters/filter.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "re2/re2.h"

namespace berth::filters {

enum class Operator { kPresent, kEqual, kNotEqual, kMatches };

struct Filter::Node {
  enum class Kind { kAny, kAll, kSelector };
  Kind kind = Kind::kSelector;
  std::vector<std::shared_ptr<const Node>> children;  // kAny, kAll
  // kSelector:
  std::vector<std::string> fieldpath;
  Operator op = Operator::kPresent;
  std::string value;
  std::unique_ptr<RE2> re;  // kMatches only; RE2 is thread-safe for matching

  bool Match(const Adaptor& adaptor) const {
    switch (kind) {
      case Kind::kAny:
        for (const auto& child : children) {
          if (child->Match(adaptor)) {
            return true;
          }
        }
        return false;
      case Kind::kAll:
        for (const auto& child : children) {
          if (!child->Match(adaptor)) {
            return false;
          }
        }
        return true;
      case Kind::kSelector:
        break;
    }
    std::optional<std::string> field;
    if (adaptor) {
      field = adaptor(fieldpath);
    }
    switch (op) {
      case Operator::kPresent:
        return field.has_value();
      case Operator::kEqual:
        return field.has_value() && *field == value;
      case Operator::kNotEqual:
        // As containerd: an absent field counts as "" and so differs from any non-empty value.
        return field.value_or("") != value;
      case Operator::kMatches:
        // As containerd: an absent field is matched as "". Unanchored, like Go's MatchString.
        return RE2::PartialMatch(field.value_or(""), *re);
    }
    return false;
  }
};

namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool IsFieldChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool IsOperatorChar(char c) { return c == '=' || c == '!' || c == '~'; }
// A bare value runs to the next comma, space or control character. Bytes >= 0x80 (UTF-8) are
// part of it.
bool IsValueChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return c != ',' && u > 0x20 && u != 0x7f;
}
int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}
void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Recursive descent over containerd's grammar:
//   selectors := selector ("," selector)*
//   selector  := fieldpath [operator value]
//   fieldpath := field ("." field)*
//   field     := quoted | [A-Za-z0-9_]+
//   operator  := "==" | "!=" | "~="
//   value     := quoted | [^\s,]+
//   quoted    := Go string syntax with " (or / and | after ~=)
// Whitespace is allowed between tokens (containerd only allows it around the operator).
class Parser {
 public:
  explicit Parser(absl::string_view input) : input_(input) {}

  absl::StatusOr<std::shared_ptr<const Filter::Node>> Parse() {
    auto all = std::make_shared<Filter::Node>();
    all->kind = Filter::Node::Kind::kAll;
    while (true) {
      auto selector = ParseSelector();
      if (!selector.ok()) {
        return selector.status();
      }
      all->children.push_back(*std::move(selector));
      SkipSpace();
      if (AtEnd()) {
        break;
      }
      if (Peek() != ',') {
        return Error(pos_, "unexpected input, expected ',' or the end of the filter");
      }
      ++pos_;
    }
    if (all->children.size() == 1) {
      return all->children.front();
    }
    return std::shared_ptr<const Filter::Node>(std::move(all));
  }

 private:
  bool AtEnd() const { return pos_ >= input_.size(); }
  char Peek() const { return input_[pos_]; }
  void SkipSpace() {
    while (!AtEnd() && IsSpace(Peek())) {
      ++pos_;
    }
  }

  absl::Status Error(size_t pos, absl::string_view reason) const {
    std::string where;
    if (pos < input_.size()) {
      where = absl::StrCat("at position ", pos, " (near \"", input_.substr(pos, 10), "\")");
    } else {
      where = absl::StrCat("at position ", pos, " (end of input)");
    }
    return absl::InvalidArgumentError(
        absl::StrCat("invalid filter \"", input_, "\" ", where, ": ", reason));
  }

  absl::StatusOr<std::shared_ptr<const Filter::Node>> ParseSelector() {
    auto node = std::make_shared<Filter::Node>();
    node->kind = Filter::Node::Kind::kSelector;
    while (true) {
      auto field = ParseField();
      if (!field.ok()) {
        return field.status();
      }
      node->fieldpath.push_back(*std::move(field));
      size_t field_end = pos_;
      if (!AtEnd() && !IsSpace(Peek()) && !IsOperatorChar(Peek()) && Peek() != '.' &&
          Peek() != ',') {
        return Error(field_end, absl::StrCat("unexpected '", std::string(1, Peek()),
                                             "' in a field name; quote it: labels.\"a/b-c\""));
      }
      SkipSpace();
      if (AtEnd() || Peek() != '.') {
        break;
      }
      ++pos_;
    }
    if (AtEnd() || Peek() == ',') {
      node->op = Operator::kPresent;
      return std::shared_ptr<const Filter::Node>(std::move(node));
    }
    size_t op_pos = pos_;
    if (!IsOperatorChar(Peek())) {
      return Error(pos_, "expected an operator (==, != or ~=), ',' or the end of the filter");
    }
    while (!AtEnd() && IsOperatorChar(Peek())) {
      ++pos_;
    }
    absl::string_view op = input_.substr(op_pos, pos_ - op_pos);
    if (op == "==") {
      node->op = Operator::kEqual;
    } else if (op == "!=") {
      node->op = Operator::kNotEqual;
    } else if (op == "~=") {
      node->op = Operator::kMatches;
    } else {
      return Error(op_pos, absl::StrCat("unsupported operator \"", op, "\" (want ==, != or ~=)"));
    }
    SkipSpace();
    size_t value_pos = pos_;
    auto value = ParseValue(node->op == Operator::kMatches);
    if (!value.ok()) {
      return value.status();
    }
    node->value = *std::move(value);
    if (node->op == Operator::kMatches) {
      RE2::Options options;
      options.set_log_errors(false);
      node->re = std::make_unique<RE2>(node->value, options);
      if (!node->re->ok()) {
        return Error(value_pos, absl::StrCat("invalid regular expression \"", node->value,
                                             "\": ", node->re->error()));
      }
    }
    return std::shared_ptr<const Filter::Node>(std::move(node));
  }

  absl::StatusOr<std::string> ParseField() {
    SkipSpace();
    if (AtEnd()) {
      return Error(pos_, "expected a field name or a quoted string");
    }
    char c = Peek();
    if (c == '"') {
      return ParseQuoted();
    }
    if (c == '/' || c == '|') {
      return Error(pos_, absl::StrCat("'", std::string(1, c),
                                      "' is not allowed in a field name; quote it with \"...\""));
    }
    if (!IsFieldChar(c)) {
      return Error(pos_, "expected a field name ([A-Za-z0-9_]+) or a quoted string");
    }
    size_t start = pos_;
    while (!AtEnd() && IsFieldChar(Peek())) {
      ++pos_;
    }
    return std::string(input_.substr(start, pos_ - start));
  }

  absl::StatusOr<std::string> ParseValue(bool allow_alt_quotes) {
    if (AtEnd() || Peek() == ',') {
      return Error(pos_, "expected a value or a quoted string");
    }
    char c = Peek();
    if (c == '"') {
      return ParseQuoted();
    }
    if (c == '/' || c == '|') {
      if (!allow_alt_quotes) {
        return Error(pos_, absl::StrCat("'", std::string(1, c),
                                        "' quotes are only allowed after ~=; use \"...\""));
      }
      return ParseQuoted();
    }
    if (!IsValueChar(c)) {
      return Error(pos_, "expected a value or a quoted string");
    }
    size_t start = pos_;
    while (!AtEnd() && IsValueChar(Peek())) {
      ++pos_;
    }
    return std::string(input_.substr(start, pos_ - start));
  }

  // At the opening quote. Go string escapes: \a \b \f \n \r \t \v \\ \<quote>, \ooo, \xhh,
  // \uhhhh, \Uhhhhhhhh.
  absl::StatusOr<std::string> ParseQuoted() {
    size_t start = pos_;
    char quote = input_[pos_++];
    std::string out;
    while (true) {
      if (AtEnd() || Peek() == '\n') {
        return Error(start, "quoted string not terminated");
      }
      char c = input_[pos_];
      if (c == '\0') {
        return Error(pos_, "unexpected NUL character");
      }
      if (c == quote) {
        ++pos_;
        return out;
      }
      if (c != '\\') {
        out.push_back(c);
        ++pos_;
        continue;
      }
      size_t escape_pos = pos_;
      ++pos_;
      if (AtEnd()) {
        return Error(start, "quoted string not terminated");
      }
      char e = input_[pos_++];
      switch (e) {
        case 'a': out.push_back('\a'); continue;
        case 'b': out.push_back('\b'); continue;
        case 'f': out.push_back('\f'); continue;
        case 'n': out.push_back('\n'); continue;
        case 'r': out.push_back('\r'); continue;
        case 't': out.push_back('\t'); continue;
        case 'v': out.push_back('\v'); continue;
        case '\\': out.push_back('\\'); continue;
        default: break;
      }
      if (e == quote) {
        out.push_back(quote);
        continue;
      }
      if (e >= '0' && e <= '7') {
        uint32_t v = static_cast<uint32_t>(e - '0');
        for (int i = 0; i < 2; ++i) {
          if (AtEnd() || Peek() < '0' || Peek() > '7') {
            return Error(escape_pos, "illegal octal escape (want \\ooo)");
          }
          v = (v << 3) | static_cast<uint32_t>(input_[pos_++] - '0');
        }
        if (v > 255) {
          return Error(escape_pos, "octal escape value > 255");
        }
        out.push_back(static_cast<char>(v));
        continue;
      }
      int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
      if (digits == 0) {
        return Error(escape_pos,
                     absl::StrCat("illegal escape sequence \"\\", std::string(1, e),
                                  "\" (a regular expression escape needs \\\\)"));
      }
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        int h = AtEnd() ? -1 : HexValue(Peek());
        if (h < 0) {
          return Error(escape_pos, absl::StrCat("illegal \\", std::string(1, e), " escape (want ",
                                                digits, " hex digits)"));
        }
        v = (v << 4) | static_cast<uint32_t>(h);
        ++pos_;
      }
      if (e == 'x') {
        out.push_back(static_cast<char>(v));
      } else if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return Error(escape_pos, "escape is not a valid Unicode code point");
      } else {
        AppendUtf8(v, &out);
      }
    }
  }

  absl::string_view input_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<Filter> Filter::Parse(absl::string_view text) {
  Filter filter;
  // As containerd: the empty filter (here also all-blank) matches everything.
  bool blank = true;
  for (char c : text) {
    if (!IsSpace(c)) {
      blank = false;
      break;
    }
  }
  if (blank) {
    return filter;
  }
  auto root = Parser(text).Parse();
  if (!root.ok()) {
    return root.status();
  }
  filter.root_ = *std::move(root);
  return filter;
}

absl::StatusOr<Filter> Filter::ParseAll(const std::vector<std::string>& texts) {
  Filter filter;
  auto any = std::make_shared<Node>();
  any->kind = Node::Kind::kAny;
  for (const std::string& text : texts) {
    auto one = Parse(text);
    if (!one.ok()) {
      return one.status();
    }
    if (one->root_ == nullptr) {
      // One alternative matches everything, so the disjunction does; keep validating the rest.
      any = nullptr;
    }
    if (any != nullptr) {
      any->children.push_back(one->root_);
    }
  }
  if (any == nullptr || any->children.empty()) {
    return filter;
  }
  if (any->children.size() == 1) {
    filter.root_ = any->children.front();
  } else {
    filter.root_ = std::move(any);
  }
  return filter;
}

bool Filter::Match(const Adaptor& adaptor) const {
  if (root_ == nullptr) {
    return true;
  }
  return root_->Match(adaptor);
}

Adaptor MakeAdaptor(std::function<std::optional<std::string>(absl::string_view field)> fields,
                    const std::map<std::string, std::string>* labels) {
  return [fields = std::move(fields),
          labels](const std::vector<std::string>& fieldpath) -> std::optional<std::string> {
    if (fieldpath.empty()) {
      return std::nullopt;
    }
    if (fieldpath.front() == "labels") {
      if (labels == nullptr || fieldpath.size() < 2) {
        return std::nullopt;
      }
      std::string key =
          absl::StrJoin(fieldpath.begin() + 1, fieldpath.end(), ".");
      auto it = labels->find(key);
      if (it == labels->end()) {
        return std::nullopt;
      }
      return it->second;
    }
    if (!fields) {
      return std::nullopt;
    }
    if (fieldpath.size() == 1) {
      return fields(fieldpath.front());
    }
    return fields(absl::StrJoin(fieldpath, "."));
  };
}

}  // namespace berth::filters
