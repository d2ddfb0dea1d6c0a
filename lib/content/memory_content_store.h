#pragma once

// A ContentStore that keeps everything in memory: blobs, their labels and ingests in progress,
// per namespace. It is the in-process store a component is handed when it should not need a
// running contentd (snapshotd's Diff and Unpacker tests, later imaged's), and it passes the same
// conformance suite as LocalContentStore and GrpcContentStore (content_store_testsuite.h), so
// code tested against it meets the contract the real stores keep.
//
// What it leaves out, by design: nothing survives the object (no crash safety, no resume
// across restarts), and nothing is collected: leases in the Context are accepted and ignored,
// a blob stays until Delete. Bytes are shared between namespaces holding the same digest.
// Thread-safe.

#include <memory>

#include "lib/content/content_store.h"

namespace berth::content {

std::unique_ptr<ContentStore> NewMemoryContentStore();

}  // namespace berth::content
