#pragma once

#include <string>

namespace berth {

// What every call into a berth store carries besides its own arguments: the namespace the
// request is served in and the lease (if any) that protects what it creates. gRPC servers fill
// it from the `containerd-namespace` and `containerd-lease` metadata headers; gRPC clients send
// it back out in the same headers. An empty `lease` means no lease.
struct Context {
  std::string ns;
  std::string lease;
};

}  // namespace berth
