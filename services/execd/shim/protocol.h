#pragma once

// berth-shim's control protocol, shared by the shim and execd's client (std only: the shim links
// no abseil). One request per connection: a line of space-separated fields, answered by one
// line, "ok FIELD..." or "err KIND MESSAGE" (KIND: notfound, exists, precondition, invalid,
// failed). A `wait` is answered when its process has exited (and its exit is on disk).
// Fields are escaped so any string fits: bytes <= ' ', '%' and 0x7f become %XX; the empty
// string is "%".
//
// Requests (EXEC is the exec id, "%" for the init process):
//   start                         -> ok PID             (runtime start)
//   exec EXEC SPEC TTY IN OUT ERR -> ok PID             (runtime exec --detach; TTY 0 or 1)
//   state EXEC                    -> ok PID STATUS EXIT_STATUS EXITED_AT_NS
//                                    (STATUS: created, running, paused, stopped)
//   wait EXEC                     -> ok EXIT_STATUS EXITED_AT_NS
//   kill EXEC SIGNAL ALL          -> ok
//   resize EXEC WIDTH HEIGHT      -> ok
//   closeio EXEC                  -> ok
//   pause | resume                -> ok
//   pids                          -> ok PID...
//   update RESOURCES_JSON_PATH    -> ok
//   delete EXEC                   -> ok   (init: runtime delete, then the shim exits)

#include <string>
#include <vector>

namespace berth::shim {

inline std::string EncodeField(const std::string& s) {
  if (s.empty()) {
    return "%";
  }
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c <= ' ' || c == '%' || c == 0x7f) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

inline bool DecodeField(const std::string& s, std::string* out) {
  out->clear();
  if (s == "%") {
    return true;
  }
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      *out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return false;
    }
    int hi = hex(s[i + 1]);
    int lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    *out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

// "f1 f2 ...\n".
inline std::string EncodeLine(const std::vector<std::string>& fields) {
  std::string line;
  for (const std::string& f : fields) {
    if (!line.empty()) {
      line += ' ';
    }
    line += EncodeField(f);
  }
  line += '\n';
  return line;
}

// Splits a line (without its '\n') into decoded fields; false on a bad escape.
inline bool DecodeLine(const std::string& line, std::vector<std::string>* fields) {
  fields->clear();
  size_t start = 0;
  while (start <= line.size()) {
    size_t end = line.find(' ', start);
    if (end == std::string::npos) {
      end = line.size();
    }
    if (end > start) {
      std::string field;
      if (!DecodeField(line.substr(start, end - start), &field)) {
        return false;
      }
      fields->push_back(std::move(field));
    }
    start = end + 1;
  }
  return true;
}

}  // namespace berth::shim
