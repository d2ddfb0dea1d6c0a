#pragma once

// execd's container records: containers::ContainerStore in one sqlite database (lib/sqlite,
// WAL), one row per (namespace, id). Each call is one statement or one transaction, so a record
// is either wholly written or not at all, and a crash leaves the database as the last committed
// call left it; there is nothing to recover at Open. The spec and every Any are stored as sent
// (type URL and bytes), never parsed. Thread-safe: one mutex around the database.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/containers/container_store.h"
#include "lib/sqlite/sqlite.h"

namespace berth::execd {

class SqliteContainerStore final : public containers::ContainerStore {
 public:
  // Opens or creates the database at `path` (its directory must exist) and brings its schema
  // up to date.
  static absl::StatusOr<std::unique_ptr<SqliteContainerStore>> Open(const std::string& path);
  SqliteContainerStore(const SqliteContainerStore&) = delete;
  SqliteContainerStore& operator=(const SqliteContainerStore&) = delete;

  absl::StatusOr<containers::Container> Get(const Context& ctx, absl::string_view id) override;
  absl::StatusOr<std::vector<containers::Container>> List(
      const Context& ctx, const std::vector<std::string>& filters) override;
  absl::StatusOr<containers::Container> Create(const Context& ctx,
                                               const containers::Container& container) override;
  absl::StatusOr<containers::Container> Update(const Context& ctx,
                                               const containers::Container& container,
                                               const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const Context& ctx, absl::string_view id) override;

  // How many records the database holds, over all namespaces (for metrics).
  absl::StatusOr<int64_t> Count();
  // The namespaces that hold records.
  absl::StatusOr<std::vector<std::string>> Namespaces();

 private:
  explicit SqliteContainerStore(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}

  // The record `id` in `ns` (NotFound if absent). Callers hold mu_.
  absl::StatusOr<containers::Container> Read(const std::string& ns, absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts (`replace` false) or overwrites the record. Callers hold mu_.
  absl::Status Write(const std::string& ns, const containers::Container& container, bool replace)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<sqlite::Db> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::execd
