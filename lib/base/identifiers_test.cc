#include "lib/base/identifiers.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

TEST(IdentifiersTest, AcceptsContainerdStyleNames) {
  for (const char* ok : {"default", "k8s.io", "a", "my-ns_2", "A1.b2-c3"}) {
    EXPECT_TRUE(ValidateNamespace(ok).ok()) << ok;
  }
}

TEST(IdentifiersTest, RejectsBadNames) {
  for (std::string bad : {std::string(""), std::string("-a"), std::string("a-"),
                          std::string("a..b"), std::string("a/b"), std::string("ns with space"),
                          std::string(77, 'a'), std::string("../etc")}) {
    absl::Status st = ValidateNamespace(bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(IdentifiersTest, LeaseIdsAreWhatContainerdsClientsMake) {
  // leases.WithRandomID: "<nanoseconds>-<base64url of 3 bytes>"; '_' and '-' land anywhere.
  for (const char* ok : {"476399390-_Bu0", "12-ab-_", "berth-1-abc", "x"}) {
    EXPECT_TRUE(ValidateLeaseId(ok).ok()) << ok;
  }
  for (std::string bad : {std::string(""), std::string("a b"), std::string("a\nb"),
                          std::string("caf\xc3\xa9"), std::string(256, 'a')}) {
    EXPECT_EQ(ValidateLeaseId(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace berth
