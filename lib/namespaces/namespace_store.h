#pragma once

// The namespace registry (containerd's namespaces.Store). contentd owns it. A namespace is
// created explicitly or implicitly the first time something is stored in it. Thread-safe.

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::namespaces {

using Labels = std::map<std::string, std::string>;

struct Namespace {
  std::string name;
  Labels labels;
};

class NamespaceStore {
 public:
  virtual ~NamespaceStore() = default;
  // InvalidArgument for a bad name, AlreadyExists if present.
  virtual absl::Status Create(const std::string& name, const Labels& labels) = 0;
  virtual absl::StatusOr<Namespace> Get(const std::string& name) = 0;
  virtual absl::StatusOr<std::vector<Namespace>> List() = 0;
  // fieldpaths: "labels" or "labels.<key>"; empty = replace all labels.
  virtual absl::StatusOr<Namespace> Update(const Namespace& ns,
                                           const std::vector<std::string>& fieldpaths) = 0;
  // FailedPrecondition if anything (blobs, ingests, leases) is still in it; NotFound if absent.
  virtual absl::Status Delete(const std::string& name) = 0;
};

}  // namespace berth::namespaces
