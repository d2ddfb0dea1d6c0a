#pragma once

// What the pull tests (pull_test.cc, pull_stream_test.cc) share besides imaged_stack.h: the
// check that a pull left no lease in contentd.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lib/base/context.h"
#include "lib/base/grpc_client.h"
#include "lib/leases/grpc_lease_manager.h"

namespace berth::integration {

// No pull's lease (berth.io/pull) is left in the contentd at `address` (in ctx's namespace);
// image records' own leases (berth.io/image) stay.
inline void ExpectNoLeaseIn(const std::string& address, const Context& ctx) {
  leases::GrpcLeaseManager leases(Dial(address));
  absl::StatusOr<std::vector<leases::Lease>> list =
      leases.List(ctx, {"labels.\"berth.io/pull\""});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(list->empty()) << list->size() << " leases left, first " << (*list)[0].id;
}

}  // namespace berth::integration
