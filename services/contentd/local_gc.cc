// Garbage collection for LocalContentStore (containerd's gc/gc.go and metadata/gc.go, reduced to
// what contentd owns): a plain mark from the roots through containerd.io/gc.ref.content*
// labels, then a sweep of the candidates that were not reached.
//
// Roots in a namespace: blobs labelled containerd.io/gc.root, and the "content" and "ingests"
// resources of its leases (a lease labelled containerd.io/gc.flat protects its content without
// following references). A full pass (CollectGarbage) considers every blob a candidate; a
// release (deleting or expiring a lease, deleting a lease resource) only what the released
// resources reach, everything else counting as a root: it takes what they alone kept alive.
// Blobs a proxy consumer claimed (content_metadata.h, proxy_claims) are roots of these
// collections too; HeldByBerthLocked, what berth alone holds, leaves them out.

#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd::internal {

namespace {

namespace fs = std::filesystem;

// Digests named by a blob's containerd.io/gc.ref.content* labels.
std::vector<std::string> ContentRefs(const LabelMap& labels) {
  std::vector<std::string> refs;
  for (auto it = labels.lower_bound(std::string(kGcRefContentPrefix));
       it != labels.end() && absl::StartsWith(it->first, kGcRefContentPrefix); ++it) {
    absl::StatusOr<Digest> digest = Digest::Parse(it->second);
    if (digest.ok()) {
      refs.push_back(digest->ToString());
    }
  }
  return refs;
}

// The roots of a namespace as berth sees them: gc.root labels and live leases (a gc.flat
// lease's blobs without their references). Digest -> why it is held.
std::map<std::string, std::string> BerthRoots(const GcGraph& graph) {
  std::map<std::string, std::string> roots;
  for (const auto& [digest, labels] : graph.blobs) {
    if (labels.count(std::string(kGcRootLabel)) != 0) {
      roots.emplace(digest, absl::StrCat("it carries ", kGcRootLabel));
    }
  }
  for (const auto& [digest, lease] : graph.leased) {
    roots.emplace(digest, absl::StrCat("lease \"", lease, "\" holds it"));
  }
  return roots;
}

// Every blob reachable from `roots` through gc.ref.content labels, with why it is held.
std::map<std::string, std::string> Mark(const GcGraph& graph,
                                        const std::map<std::string, std::string>& roots) {
  std::map<std::string, std::string> marked;
  std::deque<std::pair<std::string, std::string>> queue(roots.begin(), roots.end());
  while (!queue.empty()) {
    auto [digest, why] = std::move(queue.front());
    queue.pop_front();
    auto it = graph.blobs.find(digest);
    if (it == graph.blobs.end() || !marked.emplace(digest, why).second) {
      continue;
    }
    for (std::string& ref : ContentRefs(it->second)) {
      queue.emplace_back(std::move(ref),
                         absl::StrCat("a gc.ref.content label of ", digest, " names it, and ", why));
    }
  }
  for (const auto& [digest, lease] : graph.flat) {
    marked.emplace(digest, absl::StrCat("lease \"", lease, "\" holds it"));
  }
  return marked;
}

}  // namespace

absl::Status FileStore::LoadGcGraphLocked(const std::string& ns, GcGraph* graph) {
  // The namespace's blobs and their references.
  {
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                           db_->Prepare("SELECT digest, labels FROM blobs WHERE ns = ?"));
    st.Bind(1, ns);
    BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
      absl::StatusOr<LabelMap> labels = DecodeLabels(st.Text(1));
      if (!labels.ok()) {
        return labels.status();
      }
      graph->blobs.emplace(st.Text(0), std::move(*labels));
      return absl::OkStatus();
    }));
  }
  // What live leases hold.
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare("SELECT r.type, r.id, l.labels, l.id FROM lease_resources r JOIN leases l ON "
                   "r.ns = l.ns AND r.lease = l.id WHERE r.ns = ? AND r.type IN ('content', "
                   "'ingests')"));
  st.Bind(1, ns);
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    std::string type = st.Text(0);
    std::string id = st.Text(1);
    if (type == "ingests") {
      graph->leased_ingests.insert(id);
      return absl::OkStatus();
    }
    absl::StatusOr<LabelMap> labels = DecodeLabels(st.Text(2));
    if (!labels.ok()) {
      return labels.status();
    }
    (labels->count(std::string(kGcFlatLabel)) != 0 ? graph->flat : graph->leased)
        .emplace(id, st.Text(3));
    return absl::OkStatus();
  }));
  BERTH_ASSIGN_OR_RETURN(graph->claimed, meta_->ProxyClaims(ns));
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> FileStore::HeldByBerthLocked(
    const std::string& ns) {
  GcGraph graph;
  BERTH_RETURN_IF_ERROR(LoadGcGraphLocked(ns, &graph));
  return Mark(graph, BerthRoots(graph));
}

absl::Status FileStore::CollectLocked(const std::string& ns, const GcScope& scope, GcResult* result,
                                      std::vector<Removal>* removed) {
  GcGraph graph;
  BERTH_RETURN_IF_ERROR(LoadGcGraphLocked(ns, &graph));

  // Candidates: everything (full pass) or what the released resources reach.
  std::set<std::string> candidates;
  if (scope.full) {
    for (const auto& [digest, labels] : graph.blobs) {
      candidates.insert(digest);
    }
  } else {
    std::deque<std::string> queue(scope.blobs.begin(), scope.blobs.end());
    while (!queue.empty()) {
      std::string digest = std::move(queue.front());
      queue.pop_front();
      auto it = graph.blobs.find(digest);
      if (it == graph.blobs.end() || !candidates.insert(digest).second) {
        continue;
      }
      for (std::string& ref : ContentRefs(it->second)) {
        queue.push_back(std::move(ref));
      }
    }
  }

  // Mark from berth's roots, what is no candidate, and what a proxy consumer claimed (it keeps
  // its references where contentd cannot see them).
  std::map<std::string, std::string> roots = BerthRoots(graph);
  for (const auto& [digest, labels] : graph.blobs) {
    if (candidates.count(digest) == 0 || graph.claimed.count(digest) != 0) {
      roots.emplace(digest, "");
    }
  }
  std::map<std::string, std::string> marked = Mark(graph, roots);
  const std::set<std::string>& leased_ingests = graph.leased_ingests;

  // Ingests to sweep: released ones, or (full pass) those left untouched too long. Never one
  // that a lease holds or a writer has open.
  std::vector<IngestRow> dead_ingests;
  {
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement st,
        db_->Prepare("SELECT ns, ref, id, total, expected, started_at FROM ingests WHERE ns = ?"));
    st.Bind(1, ns);
    absl::Time now = absl::Now();
    BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
      IngestRow row;
      row.ns = st.Text(0);
      row.ref = st.Text(1);
      row.id = st.Text(2);
      if (leased_ingests.count(row.ref) != 0 || active_.count(IngestKey(ns, row.ref)) != 0) {
        return absl::OkStatus();
      }
      if (scope.ingests.count(row.ref) != 0) {
        dead_ingests.push_back(std::move(row));
      } else if (scope.full) {
        row.started_at = FromNanos(st.Int(5));
        if (StatusOf(row).updated_at + options_.ingest_expiry <= now) {
          dead_ingests.push_back(std::move(row));
        }
      }
      return absl::OkStatus();
    }));
  }

  // Sweep.
  std::vector<Removal> swept;
  for (const std::string& digest : candidates) {
    if (marked.count(digest) == 0) {
      absl::StatusOr<Digest> d = Digest::Parse(digest);
      if (d.ok()) {
        swept.push_back({ns, *d});
      }
    }
  }
  if (swept.empty() && dead_ingests.empty()) {
    return absl::OkStatus();
  }
  BERTH_RETURN_IF_ERROR(meta_->Transaction([&]() -> absl::Status {
    for (const Removal& r : swept) {
      BERTH_RETURN_IF_ERROR(meta_->DeleteBlob(ns, r.digest).status());
    }
    for (const IngestRow& row : dead_ingests) {
      BERTH_RETURN_IF_ERROR(meta_->DeleteIngest(ns, row.ref));
    }
    return absl::OkStatus();
  }));
  RemoveUnreferencedFilesLocked(swept);
  for (const IngestRow& row : dead_ingests) {
    std::error_code ec;
    fs::remove_all(IngestDir(row.id), ec);
  }
  result->blobs_removed += static_cast<int64_t>(swept.size());
  result->ingests_removed += static_cast<int64_t>(dead_ingests.size());
  removed->insert(removed->end(), swept.begin(), swept.end());
  return absl::OkStatus();
}

absl::Status FileStore::DeleteLeaseLocked(const std::string& ns, const std::string& id,
                                          GcResult* result, std::vector<Removal>* removed) {
  GcScope scope;
  {
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement st,
        db_->Prepare("SELECT type, id FROM lease_resources WHERE ns = ? AND lease = ?"));
    st.Bind(1, ns).Bind(2, id);
    BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
      std::string type = st.Text(0);
      if (type == "content") {
        scope.blobs.insert(st.Text(1));
      } else if (type == "ingests") {
        scope.ingests.insert(st.Text(1));
      }
      return absl::OkStatus();
    }));
  }
  // Cascades to the lease's resources.
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement del,
                         db_->Prepare("DELETE FROM leases WHERE ns = ? AND id = ?"));
  BERTH_RETURN_IF_ERROR(del.Bind(1, ns).Bind(2, id).Run());
  if (db_->Changes() == 0) {
    return absl::NotFoundError(absl::StrCat("lease ", id, " not found"));
  }
  return CollectLocked(ns, scope, result, removed);
}

absl::Status FileStore::ExpireLeasesLocked(GcResult* result, std::vector<Removal>* removed) {
  std::vector<std::pair<std::string, std::string>> expired;
  {
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT ns, id, labels FROM leases"));
    absl::Time now = absl::Now();
    BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
      absl::StatusOr<LabelMap> labels = DecodeLabels(st.Text(2));
      if (!labels.ok()) {
        return labels.status();
      }
      auto it = labels->find(std::string(kGcExpireLabel));
      if (it == labels->end()) {
        return absl::OkStatus();
      }
      absl::Time expire;
      std::string err;
      if (!absl::ParseTime(absl::RFC3339_full, it->second, &expire, &err)) {
        BERTH_LOG(Debug) << "contentd: lease " << st.Text(0) << "/" << st.Text(1) << ": bad "
                         << kGcExpireLabel << " \"" << it->second << "\": " << err;
        return absl::OkStatus();
      }
      if (expire <= now) {
        expired.emplace_back(st.Text(0), st.Text(1));
      }
      return absl::OkStatus();
    }));
  }
  for (const auto& [ns, id] : expired) {
    BERTH_RETURN_IF_ERROR(DeleteLeaseLocked(ns, id, result, removed));
    BERTH_LOG(Info) << "contentd: lease " << ns << "/" << id << " expired";
    result->leases_expired++;
  }
  return absl::OkStatus();
}

absl::StatusOr<GcResult> FileStore::CollectGarbage() { return FullPass(nullptr); }

absl::StatusOr<GcResult> FileStore::CollectNamespace(const std::string& ns) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ns));
  return FullPass(&ns);
}

absl::StatusOr<GcResult> FileStore::FullPass(const std::string* only) {
  GcResult result;
  std::vector<Removal> removed;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = ExpireLeasesLocked(&result, &removed);
    absl::StatusOr<std::vector<std::string>> names =
        only != nullptr ? std::vector<std::string>{*only} : meta_->AllNamespaces();
    if (status.ok() && !names.ok()) {
      status = names.status();
    }
    if (status.ok()) {
      GcScope scope;
      scope.full = true;
      for (const std::string& ns : *names) {
        status = CollectLocked(ns, scope, &result, &removed);
        if (!status.ok()) {
          break;
        }
      }
    }
  }
  Publish(removed);  // what was removed before an error is still gone
  if (!status.ok()) {
    return status;
  }
  for (const Removal& r : removed) {
    if (only == nullptr || r.ns == *only) {
      result.removed.push_back(r.digest.ToString());
    }
  }
  return result;
}

void FileStore::ExpiryLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.lease_expiry_interval)) {
    GcResult result;
    std::vector<Removal> removed;
    absl::Status st;
    {
      absl::MutexLock lock(&mu_);
      st = ExpireLeasesLocked(&result, &removed);
    }
    Publish(removed);
    if (!st.ok()) {
      BERTH_LOG(Error) << "contentd: expiring leases: " << st;
    }
  }
}

}  // namespace berth::contentd::internal
