#include "lib/base/random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "lib/base/logging.h"

namespace berth {

std::string RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::getrandom(bytes.data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      BERTH_LOG(Error) << "getrandom: " << strerror(errno) << "; no randomness on this host";
      std::abort();
    }
    got += static_cast<size_t>(r);
  }
  return bytes;
}

std::string RandomHex(size_t n) { return absl::BytesToHexString(RandomBytes(n)); }

std::string NewUuid() {
  std::string b = RandomBytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string hex = absl::BytesToHexString(b);
  return absl::StrFormat("%s-%s-%s-%s-%s", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                         hex.substr(16, 4), hex.substr(20));
}

}  // namespace berth
