#pragma once

// What testing.cc and nats_server.cc share; not for tests.

#include "absl/strings/string_view.h"

namespace berth::testing::internal {

// Prints "berth::testing: <message>" and aborts: a broken test machine, not a test failure.
[[noreturn]] void Die(absl::string_view message);

// Whether something accepts TCP connections on 127.0.0.1:port now.
bool CanConnectTcp(int port);

}  // namespace berth::testing::internal
