// LocalContentStore's namespaces::NamespaceStore: the namespace registry contentd owns (see
// local_file_store.h for how the store is split).

#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/status_macros.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd::internal {
namespace {

absl::Status NamespaceNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("namespace ", name, ": not found"));
}

}  // namespace

absl::Status FileStore::Create(const std::string& name, const namespaces::Labels& labels) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(name));
  BERTH_RETURN_IF_ERROR(ValidateLabels(labels));
  absl::MutexLock lock(&mu_);
  return meta_->CreateNamespace(name, labels);
}

absl::StatusOr<namespaces::Namespace> FileStore::Get(const std::string& name) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(name));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<LabelMap> labels, meta_->NamespaceLabels(name));
  if (!labels.has_value()) {
    return NamespaceNotFound(name);
  }
  return namespaces::Namespace{name, *std::move(labels)};
}

absl::StatusOr<std::vector<namespaces::Namespace>> FileStore::List() {
  absl::MutexLock lock(&mu_);
  return meta_->ListNamespaces();
}

absl::StatusOr<namespaces::Namespace> FileStore::Update(
    const namespaces::Namespace& ns, const std::vector<std::string>& fieldpaths) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ns.name));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<LabelMap> labels, meta_->NamespaceLabels(ns.name));
  if (!labels.has_value()) {
    return NamespaceNotFound(ns.name);
  }
  BERTH_RETURN_IF_ERROR(
      ApplyLabelUpdate(&*labels, ns.labels, fieldpaths, absl::StrCat("namespace ", ns.name)));
  BERTH_RETURN_IF_ERROR(meta_->SetNamespaceLabels(ns.name, *labels));
  return namespaces::Namespace{ns.name, *std::move(labels)};
}

absl::Status FileStore::Delete(const std::string& name) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(name));
  absl::MutexLock lock(&mu_);
  return meta_->DeleteNamespace(name);
}

}  // namespace berth::contentd::internal
