// content_store_testsuite.h against MemoryContentStore: the in-process store keeps the same
// contract as contentd's (services/contentd/content_conformance_test.cc runs the same suite
// against LocalContentStore and over gRPC).

#include "lib/content/memory_content_store.h"

#include "lib/content/content_store_testsuite.h"

namespace berth::content {
namespace {

class MemoryHarness {
 public:
  ContentStore& store() { return *store_; }

 private:
  std::unique_ptr<ContentStore> store_ = NewMemoryContentStore();
};

}  // namespace

INSTANTIATE_TYPED_TEST_SUITE_P(Memory, ContentStoreTest, ::testing::Types<MemoryHarness>);

}  // namespace berth::content
