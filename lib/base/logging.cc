#include "lib/base/logging.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace berth {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

const char* Name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

absl::Status SetLogLevel(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "debug" || n == "trace") {
    SetLogLevel(LogLevel::kDebug);
  } else if (n == "info") {
    SetLogLevel(LogLevel::kInfo);
  } else if (n == "warn" || n == "warning") {
    SetLogLevel(LogLevel::kWarn);
  } else if (n == "error") {
    SetLogLevel(LogLevel::kError);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level \"", name, "\" (want debug, info, warn or error)"));
  }
  return absl::OkStatus();
}

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  absl::string_view f(file);
  size_t slash = f.rfind('/');
  if (slash != absl::string_view::npos) {
    f = f.substr(slash + 1);
  }
  stream_ << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()) << ' '
          << Name(level_) << ' ' << f << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  std::string s = stream_.str();
  fwrite(s.data(), 1, s.size(), stderr);
}

}  // namespace berth
