#pragma once

#include <sstream>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace berth {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Process-wide threshold; thread-safe. Default kInfo.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "debug", "info", "warn"/"warning", "error"; InvalidArgument otherwise.
absl::Status SetLogLevel(absl::string_view name);

// One line to stderr ("2026-11-25T16:00:00.123Z info contentd.cc:42] message"), written whole
// when the statement ends. stderr is what systemd's journal collects.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace berth

#define BERTH_LOG(level)                                                   \
  if (::berth::LogLevel::k##level < ::berth::GetLogLevel()) {              \
  } else                                                                   \
    ::berth::LogMessage(::berth::LogLevel::k##level, __FILE__, __LINE__).stream()
