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

}  // namespace
}  // namespace berth
