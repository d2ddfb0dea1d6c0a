#pragma once

// Random identifiers from the kernel (getrandom). No randomness from the kernel is a broken
// host, not an error to handle: these abort with a message rather than return a weak id.
// Thread-safe.

#include <cstddef>
#include <string>

namespace berth {

// `n` random bytes.
std::string RandomBytes(size_t n);

// `n` random bytes as 2n lowercase hex digits (an id that is also a valid identifier).
std::string RandomHex(size_t n);

// An RFC 4122 version 4 uuid, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
std::string NewUuid();

}  // namespace berth
