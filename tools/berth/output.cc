#include "tools/berth/output.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace berth::cli {

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) {
      widths.resize(row.size(), 0);
    }
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    out << line << '\n';
  }
}

void PrintJson(std::ostream& out, const nlohmann::json& value) { out << value.dump(2) << '\n'; }

std::string HumanSize(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double size = static_cast<double>(bytes);
  size_t unit = 0;
  while (std::fabs(size) >= 1000 && unit + 1 < std::size(kUnits)) {
    size /= 1000;
    ++unit;
  }
  return absl::StrFormat("%.4g%s", size, kUnits[unit]);
}

std::string HumanDuration(absl::Duration d) {
  int64_t seconds = absl::ToInt64Seconds(d);
  if (seconds < 1) {
    return "Less than a second";
  }
  if (seconds == 1) {
    return "1 second";
  }
  if (seconds < 60) {
    return absl::StrCat(seconds, " seconds");
  }
  int64_t minutes = seconds / 60;
  if (minutes == 1) {
    return "About a minute";
  }
  if (minutes < 60) {
    return absl::StrCat(minutes, " minutes");
  }
  int64_t hours = static_cast<int64_t>(std::round(absl::ToDoubleHours(d)));
  if (hours == 1) {
    return "About an hour";
  }
  if (hours < 48) {
    return absl::StrCat(hours, " hours");
  }
  if (hours < 24 * 7 * 2) {
    return absl::StrCat(hours / 24, " days");
  }
  if (hours < 24 * 30 * 2) {
    return absl::StrCat(hours / 24 / 7, " weeks");
  }
  if (hours < 24 * 365 * 2) {
    return absl::StrCat(hours / 24 / 30, " months");
  }
  return absl::StrCat(hours / 24 / 365, " years");
}

std::string FormatTimestamp(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

std::string FormatLabels(const std::map<std::string, std::string>& labels) {
  if (labels.empty()) {
    return "-";
  }
  return absl::StrJoin(labels, ",", absl::PairFormatter("="));
}

absl::Status WriteFull(int fd, absl::string_view data, absl::string_view what) {
  while (!data.empty()) {
    ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w < 0) {
      return absl::UnavailableError(absl::StrCat("write to ", what, ": ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return absl::OkStatus();
}

}  // namespace berth::cli
