#include "services/imaged/sqlite_image_store.h"


#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/status_macros.h"
#include "lib/sqlite/string_map.h"

namespace berth::imaged {
namespace {

using images::Image;

// Append-only: a schema change is a new entry (lib/sqlite's migrations).
const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      R"sql(
CREATE TABLE images (
  ns TEXT NOT NULL,
  name TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  media_type TEXT NOT NULL,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  annotations TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, name)
) WITHOUT ROWID;
)sql",
  };
  return *migrations;
}

constexpr absl::string_view kColumns =
    "name, labels, media_type, digest, size, annotations, created_at, updated_at FROM images";

std::string EncodeMap(const LabelMap& map) { return sqlite::EncodeStringMap(map); }

absl::StatusOr<LabelMap> DecodeMap(const std::string& text, absl::string_view what) {
  absl::StatusOr<LabelMap> map = sqlite::DecodeStringMap(text);
  if (!map.ok()) {
    return absl::DataLossError(absl::StrCat("images.db: ", what, ": ", map.status().message()));
  }
  return map;
}

absl::StatusOr<Image> FromRow(const sqlite::Statement& row) {
  Image image;
  image.name = row.Text(0);
  const std::string what = absl::StrCat("image \"", image.name, "\"");
  BERTH_ASSIGN_OR_RETURN(image.labels, DecodeMap(row.Text(1), what + " labels"));
  image.target.media_type = row.Text(2);
  absl::StatusOr<Digest> digest = Digest::Parse(row.Text(3));
  if (!digest.ok()) {
    return absl::DataLossError(absl::StrCat("images.db: ", what, ": ", digest.status().message()));
  }
  image.target.digest = *std::move(digest);
  image.target.size = row.Int(4);
  BERTH_ASSIGN_OR_RETURN(image.target.annotations, DecodeMap(row.Text(5), what + " annotations"));
  image.created_at = absl::FromUnixNanos(row.Int(6));
  image.updated_at = absl::FromUnixNanos(row.Int(7));
  return image;
}

absl::Status NotFound(absl::string_view name) {
  return absl::NotFoundError(absl::StrCat("image \"", name, "\": not found"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteImageStore>> SqliteImageStore::Open(const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Db> db, sqlite::Db::Open(path, Migrations()));
  return std::unique_ptr<SqliteImageStore>(new SqliteImageStore(std::move(db)));
}

absl::StatusOr<Image> SqliteImageStore::Get(const Context& ctx, absl::string_view name) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  return Read(ctx.ns, name);
}

absl::StatusOr<std::vector<Image>> SqliteImageStore::List(const Context& ctx,
                                                          const std::vector<std::string>& filters) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filters));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " WHERE ns = ? ORDER BY name")));
  select.Bind(1, ctx.ns);
  std::vector<Image> matched;
  BERTH_RETURN_IF_ERROR(select.ForEachRow([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(Image image, FromRow(select));
    if (filter.Match(images::ImageAdaptor(image))) {
      matched.push_back(std::move(image));
    }
    return absl::OkStatus();
  }));
  return matched;
}

absl::StatusOr<Image> SqliteImageStore::Create(const Context& ctx, const Image& image) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_RETURN_IF_ERROR(images::ValidateImage(image));
  Image created = image;
  created.created_at = absl::Now();
  created.updated_at = created.created_at;
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(db_->Transaction([&]() -> absl::Status {
    absl::StatusOr<Image> existing = Read(ctx.ns, image.name);
    if (existing.ok()) {
      return absl::AlreadyExistsError(absl::StrCat("image \"", image.name, "\": already exists"));
    }
    if (!absl::IsNotFound(existing.status())) {
      return existing.status();
    }
    return Write(ctx.ns, created, /*replace=*/false);
  }));
  return created;
}

absl::StatusOr<Image> SqliteImageStore::Update(const Context& ctx, const Image& image,
                                               const std::vector<std::string>& fieldpaths) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  if (image.name.empty()) {
    return absl::InvalidArgumentError("image name is required for update");
  }
  Image updated;
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(db_->Transaction([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(updated, Read(ctx.ns, image.name));
    BERTH_RETURN_IF_ERROR(images::ApplyImageUpdate(&updated, image, fieldpaths));
    BERTH_RETURN_IF_ERROR(images::ValidateImage(updated));
    updated.updated_at = absl::Now();
    return Write(ctx.ns, updated, /*replace=*/true);
  }));
  return updated;
}

absl::Status SqliteImageStore::Delete(const Context& ctx, absl::string_view name, bool /*sync*/) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement del,
                         db_->Prepare("DELETE FROM images WHERE ns = ? AND name = ?"));
  del.Bind(1, ctx.ns).Bind(2, name);
  BERTH_RETURN_IF_ERROR(del.Run());
  if (db_->Changes() == 0) {
    return NotFound(name);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteImageStore::Count() {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement count, db_->Prepare("SELECT COUNT(*) FROM images"));
  BERTH_ASSIGN_OR_RETURN(bool row, count.Step());
  return row ? count.Int(0) : 0;
}

absl::StatusOr<std::vector<std::string>> SqliteImageStore::Namespaces() {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT DISTINCT ns FROM images ORDER BY ns"));
  std::vector<std::string> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.push_back(st.Text(0));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Image> SqliteImageStore::Read(const std::string& ns, absl::string_view name) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " WHERE ns = ? AND name = ?")));
  select.Bind(1, ns).Bind(2, name);
  BERTH_ASSIGN_OR_RETURN(bool found, select.Step());
  if (!found) {
    return NotFound(name);
  }
  return FromRow(select);
}

absl::Status SqliteImageStore::Write(const std::string& ns, const Image& image, bool replace) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement write,
      db_->Prepare(absl::StrCat(replace ? "REPLACE" : "INSERT",
                                " INTO images (ns, name, labels, media_type, digest, size, "
                                "annotations, created_at, updated_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")));
  write.Bind(1, ns)
      .Bind(2, image.name)
      .Bind(3, EncodeMap(image.labels))
      .Bind(4, image.target.media_type)
      .Bind(5, image.target.digest.ToString())
      .Bind(6, image.target.size)
      .Bind(7, EncodeMap(image.target.annotations))
      .Bind(8, absl::ToUnixNanos(image.created_at))
      .Bind(9, absl::ToUnixNanos(image.updated_at));
  return write.Run();
}

}  // namespace berth::imaged
