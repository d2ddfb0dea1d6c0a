#pragma once

// What the pull tests (pull_test.cc, pull_stream_test.cc) share: the chain id an image's
// snapshot gets, and the check that a pull left no lease in contentd.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/base/grpc_client.h"
#include "lib/leases/grpc_lease_manager.h"

namespace berth::integration {

// containerd's ChainID of an image config's rootfs.diff_ids, computed here.
inline std::string TopChainIdOf(const nlohmann::json& config) {
  std::string chain;
  for (const nlohmann::json& diff_id : config["rootfs"]["diff_ids"]) {
    chain = chain.empty()
                ? diff_id.get<std::string>()
                : Sha256Of(absl::StrCat(chain, " ", diff_id.get<std::string>())).ToString();
  }
  return chain;
}

// No lease is left in the contentd at `address` (in ctx's namespace).
inline void ExpectNoLeaseIn(const std::string& address, const Context& ctx) {
  leases::GrpcLeaseManager leases(Dial(address));
  absl::StatusOr<std::vector<leases::Lease>> list = leases.List(ctx, {});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(list->empty()) << list->size() << " leases left, first " << (*list)[0].id;
}

}  // namespace berth::integration
