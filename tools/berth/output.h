#pragma once

// Output for people (aligned tables, human sizes and ages) and for scripts (JSON). Everything
// goes to the stream it is given; commands pass std::cout.

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace berth::cli {

// Columns separated by at least two spaces, the last one unpadded (like Go's tabwriter as ctr
// uses it). Rows may have fewer cells than the header.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> cells);
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
};

// Pretty-printed (2 spaces) with a trailing newline.
void PrintJson(std::ostream& out, const nlohmann::json& value);

// Decimal units with 4 significant digits, as ctr prints sizes: 0 -> "0B", 1234 -> "1.234kB",
// 5000000 -> "5MB".
std::string HumanSize(int64_t bytes);
// How long ago, roughly, as ctr prints ages: "Less than a second", "3 seconds", "About a
// minute", "5 minutes", "2 hours", "3 days", "2 weeks", "4 months", "2 years".
std::string HumanDuration(absl::Duration d);
// RFC 3339 in UTC with nanoseconds when not whole ("2026-01-02T03:04:05.5Z").
std::string FormatTimestamp(absl::Time t);
// "k1=v1,k2=v2" sorted by key, "-" when empty.
std::string FormatLabels(const std::map<std::string, std::string>& labels);

// Writes all of `data` to fd, retrying on EINTR; Unavailable "write to <what>: <errno text>".
absl::Status WriteFull(int fd, absl::string_view data, absl::string_view what);

}  // namespace berth::cli
