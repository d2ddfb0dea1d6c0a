#include "services/execd/sqlite_container_store.h"

#include <nlohmann/json.hpp>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/status_macros.h"
#include "lib/sqlite/string_map.h"

namespace berth::execd {
namespace {

using containers::Any;
using containers::Container;

// Append-only: a schema change is a new entry (lib/sqlite's migrations). Labels are a JSON
// object of strings; extensions a JSON object of {"type_url", "value" (base64)}. The spec and
// runtime options are a type URL column and a BLOB column each.
const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      R"sql(
CREATE TABLE containers (
  ns TEXT NOT NULL,
  id TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  image TEXT NOT NULL,
  runtime_name TEXT NOT NULL,
  runtime_options_type TEXT NOT NULL,
  runtime_options BLOB NOT NULL,
  spec_type TEXT NOT NULL,
  spec BLOB NOT NULL,
  snapshotter TEXT NOT NULL,
  snapshot_key TEXT NOT NULL,
  extensions TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, id)
) WITHOUT ROWID;
)sql",
  };
  return *migrations;
}

constexpr absl::string_view kColumns =
    "id, labels, image, runtime_name, runtime_options_type, runtime_options, spec_type, spec, "
    "snapshotter, snapshot_key, extensions, created_at, updated_at FROM containers";

absl::Status Corrupt(absl::string_view id, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("containers.db: container \"", id, "\": ", what));
}

absl::StatusOr<LabelMap> DecodeLabels(const std::string& text, absl::string_view id) {
  absl::StatusOr<LabelMap> labels = sqlite::DecodeStringMap(text);
  if (!labels.ok()) {
    return Corrupt(id, absl::StrCat("labels: ", labels.status().message()));
  }
  return labels;
}

std::string EncodeExtensions(const std::map<std::string, Any>& extensions) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& [key, any] : extensions) {
    json[key] = {{"type_url", any.type_url}, {"value", absl::Base64Escape(any.value)}};
  }
  return json.dump();
}

absl::StatusOr<std::map<std::string, Any>> DecodeExtensions(const std::string& text,
                                                            absl::string_view id) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    return Corrupt(id, "extensions are not a JSON object");
  }
  std::map<std::string, Any> extensions;
  for (const auto& [key, value] : json.items()) {
    Any any;
    if (!value.is_object() || !value.contains("type_url") || !value["type_url"].is_string() ||
        !value.contains("value") || !value["value"].is_string() ||
        !absl::Base64Unescape(value["value"].get<std::string>(), &any.value)) {
      return Corrupt(id, absl::StrCat("extension ", key, " is malformed"));
    }
    any.type_url = value["type_url"].get<std::string>();
    extensions[key] = std::move(any);
  }
  return extensions;
}

absl::StatusOr<Container> FromRow(const sqlite::Statement& row) {
  Container c;
  c.id = row.Text(0);
  BERTH_ASSIGN_OR_RETURN(c.labels, DecodeLabels(row.Text(1), c.id));
  c.image = row.Text(2);
  c.runtime.name = row.Text(3);
  c.runtime.options = Any{row.Text(4), row.Text(5)};
  c.spec = Any{row.Text(6), row.Text(7)};
  c.snapshotter = row.Text(8);
  c.snapshot_key = row.Text(9);
  BERTH_ASSIGN_OR_RETURN(c.extensions, DecodeExtensions(row.Text(10), c.id));
  c.created_at = absl::FromUnixNanos(row.Int(11));
  c.updated_at = absl::FromUnixNanos(row.Int(12));
  return c;
}

absl::Status NotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("container \"", id, "\": not found"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteContainerStore>> SqliteContainerStore::Open(
    const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Db> db, sqlite::Db::Open(path, Migrations()));
  return std::unique_ptr<SqliteContainerStore>(new SqliteContainerStore(std::move(db)));
}

absl::StatusOr<Container> SqliteContainerStore::Get(const Context& ctx, absl::string_view id) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  return Read(ctx.ns, id);
}

absl::StatusOr<std::vector<Container>> SqliteContainerStore::List(
    const Context& ctx, const std::vector<std::string>& filters) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filters));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " WHERE ns = ? ORDER BY id")));
  select.Bind(1, ctx.ns);
  std::vector<Container> matched;
  BERTH_RETURN_IF_ERROR(select.ForEachRow([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(Container c, FromRow(select));
    if (filter.Match(containers::ContainerAdaptor(c))) {
      matched.push_back(std::move(c));
    }
    return absl::OkStatus();
  }));
  return matched;
}

absl::StatusOr<Container> SqliteContainerStore::Create(const Context& ctx,
                                                       const Container& container) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_RETURN_IF_ERROR(containers::ValidateContainer(container));
  Container created = container;
  for (auto it = created.labels.begin(); it != created.labels.end();) {
    it = it->second.empty() ? created.labels.erase(it) : std::next(it);
  }
  created.created_at = absl::Now();
  created.updated_at = created.created_at;
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(db_->Transaction([&]() -> absl::Status {
    absl::StatusOr<Container> existing = Read(ctx.ns, container.id);
    if (existing.ok()) {
      return absl::AlreadyExistsError(
          absl::StrCat("container \"", container.id, "\": already exists"));
    }
    if (!absl::IsNotFound(existing.status())) {
      return existing.status();
    }
    return Write(ctx.ns, created, /*replace=*/false);
  }));
  return created;
}

absl::StatusOr<Container> SqliteContainerStore::Update(
    const Context& ctx, const Container& container, const std::vector<std::string>& fieldpaths) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  if (container.id.empty()) {
    return absl::InvalidArgumentError("container id is required for update");
  }
  Container updated;
  absl::MutexLock lock(&mu_);
  BERTH_RETURN_IF_ERROR(db_->Transaction([&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(updated, Read(ctx.ns, container.id));
    BERTH_RETURN_IF_ERROR(containers::ApplyContainerUpdate(&updated, container, fieldpaths));
    BERTH_RETURN_IF_ERROR(containers::ValidateContainer(updated));
    updated.updated_at = absl::Now();
    return Write(ctx.ns, updated, /*replace=*/true);
  }));
  return updated;
}

absl::Status SqliteContainerStore::Delete(const Context& ctx, absl::string_view id) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement del,
                         db_->Prepare("DELETE FROM containers WHERE ns = ? AND id = ?"));
  del.Bind(1, ctx.ns).Bind(2, id);
  BERTH_RETURN_IF_ERROR(del.Run());
  if (db_->Changes() == 0) {
    return NotFound(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteContainerStore::Count() {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement count, db_->Prepare("SELECT COUNT(*) FROM containers"));
  BERTH_ASSIGN_OR_RETURN(bool row, count.Step());
  return row ? count.Int(0) : 0;
}

absl::StatusOr<std::vector<std::string>> SqliteContainerStore::Namespaces() {
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement st,
                         db_->Prepare("SELECT DISTINCT ns FROM containers ORDER BY ns"));
  std::vector<std::string> out;
  BERTH_RETURN_IF_ERROR(st.ForEachRow([&]() -> absl::Status {
    out.push_back(st.Text(0));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Container> SqliteContainerStore::Read(const std::string& ns,
                                                     absl::string_view id) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " WHERE ns = ? AND id = ?")));
  select.Bind(1, ns).Bind(2, id);
  BERTH_ASSIGN_OR_RETURN(bool found, select.Step());
  if (!found) {
    return NotFound(id);
  }
  return FromRow(select);
}

absl::Status SqliteContainerStore::Write(const std::string& ns, const Container& c,
                                         bool replace) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement write,
      db_->Prepare(absl::StrCat(
          replace ? "REPLACE" : "INSERT",
          " INTO containers (ns, id, labels, image, runtime_name, runtime_options_type, "
          "runtime_options, spec_type, spec, snapshotter, snapshot_key, extensions, created_at, "
          "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")));
  write.Bind(1, ns)
      .Bind(2, c.id)
      .Bind(3, sqlite::EncodeStringMap(c.labels))
      .Bind(4, c.image)
      .Bind(5, c.runtime.name)
      .Bind(6, c.runtime.options.type_url)
      .BindBlob(7, c.runtime.options.value)
      .Bind(8, c.spec.type_url)
      .BindBlob(9, c.spec.value)
      .Bind(10, c.snapshotter)
      .Bind(11, c.snapshot_key)
      .Bind(12, EncodeExtensions(c.extensions))
      .Bind(13, absl::ToUnixNanos(c.created_at))
      .Bind(14, absl::ToUnixNanos(c.updated_at));
  return write.Run();
}

}  // namespace berth::execd
