#pragma once

// imaged's image records: images::ImageStore in one sqlite database (lib/sqlite, WAL), one row
// per (namespace, name). Each call is one statement or one transaction, so a record is either
// wholly written or not at all, and a crash leaves the database as the last committed call
// left it; there is nothing to recover at Open. Like snapshotd, imaged keeps the namespace as
// a column and needs no registry of its own (contentd holds the namespace registry).
// Thread-safe: one mutex around the database.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/images/image_store.h"
#include "lib/sqlite/sqlite.h"

namespace berth::imaged {

class SqliteImageStore final : public images::ImageStore {
 public:
  // Opens or creates the database at `path` (its directory must exist) and brings its schema
  // up to date.
  static absl::StatusOr<std::unique_ptr<SqliteImageStore>> Open(const std::string& path);
  SqliteImageStore(const SqliteImageStore&) = delete;
  SqliteImageStore& operator=(const SqliteImageStore&) = delete;

  absl::StatusOr<images::Image> Get(const Context& ctx, absl::string_view name) override;
  absl::StatusOr<std::vector<images::Image>> List(const Context& ctx,
                                                  const std::vector<std::string>& filters) override;
  absl::StatusOr<images::Image> Create(const Context& ctx, const images::Image& image) override;
  absl::StatusOr<images::Image> Update(const Context& ctx, const images::Image& image,
                                       const std::vector<std::string>& fieldpaths) override;
  // `sync` waits for nothing here: HoldingImageStore (image_holds.h) does the collecting.
  absl::Status Delete(const Context& ctx, absl::string_view name, bool sync) override;

  // How many records the database holds, over all namespaces (for metrics).
  absl::StatusOr<int64_t> Count();
  // The namespaces holding at least one record, sorted.
  absl::StatusOr<std::vector<std::string>> Namespaces();

 private:
  explicit SqliteImageStore(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}

  // The record `name` in `ns` (NotFound if absent). Callers hold mu_.
  absl::StatusOr<images::Image> Read(const std::string& ns, absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts (`replace` false) or overwrites the record. Callers hold mu_.
  absl::Status Write(const std::string& ns, const images::Image& image, bool replace)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<sqlite::Db> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::imaged
