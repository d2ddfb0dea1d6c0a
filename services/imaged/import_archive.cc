#include "services/imaged/import_archive.h"

#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/base/status_macros.h"
#include "lib/content/blob_stream.h"
#include "lib/images/oci.h"

namespace berth::imaged {

namespace {

using State = BlobEvent::State;

bool IsDocument(absl::string_view path) {
  return path == "index.json" || path == "manifest.json" || path == "oci-layout" ||
         path == "repositories";
}

// docker save's legacy per-layer metadata (<id>/json, <id>/VERSION): not needed, not stored.
bool IsLegacyMetadata(absl::string_view path) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  return parts.size() == 2 && (parts[1] == "json" || parts[1] == "VERSION");
}

bool IsLegacyLayerLink(absl::string_view path) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  return parts.size() == 2 && parts[1] == "layer.tar";
}

// The digest a blobs/<alg>/<hex> path names; nullopt for other paths.
absl::StatusOr<std::optional<Digest>> BlobName(absl::string_view path) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  if (parts.size() != 3 || parts[0] != "blobs") {
    return std::nullopt;
  }
  absl::StatusOr<Digest> digest = Digest::Parse(absl::StrCat(parts[1], ":", parts[2]));
  if (!digest.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("archive: entry \"", path,
                                                   "\": not a blob name: ",
                                                   digest.status().message()));
  }
  return *digest;
}

struct Receiver {
  const Context& ctx;
  content::ContentStore& content;
  leases::LeaseManager& leases;
  images::TarReader& tar;
  const ReceiveOptions& options;
  const BlobEventFn& progress;
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(content::kStreamChunk);

  void Emit(const Digest& digest, int64_t offset, int64_t total, State state) const {
    if (!progress) {
      return;
    }
    BlobEvent event;
    event.digest = digest;
    event.offset = offset;
    event.total = total;
    event.state = state;
    progress(event);
  }

  // Reads the current entry to its end, passing each chunk to `fn`.
  absl::Status Drain(const std::function<absl::Status(absl::string_view)>& fn) {
    while (true) {
      BERTH_RETURN_IF_ERROR(ctx.Alive());
      BERTH_ASSIGN_OR_RETURN(size_t n, tar.Read(buf.get(), content::kStreamChunk));
      if (n == 0) {
        return absl::OkStatus();
      }
      BERTH_RETURN_IF_ERROR(fn(absl::string_view(buf.get(), n)));
    }
  }

  absl::StatusOr<std::string> ReadDocument(const images::TarEntry& entry) {
    if (entry.size > images::kMaxDocumentSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive: entry \"", entry.path, "\": ", entry.size,
                       " bytes, over the limit of ", images::kMaxDocumentSize));
    }
    std::string data;
    BERTH_RETURN_IF_ERROR(Drain([&](absl::string_view chunk) {
      data.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    }));
    return data;
  }

  absl::Status Mismatch(const images::TarEntry& entry, const Digest& name, const Digest& got) {
    return absl::InvalidArgumentError(absl::StrCat("archive: entry \"", entry.path,
                                                   "\": its content is ", got.ToString(),
                                                   ", not ", name.ToString()));
  }

  // A blob the store has already: the entry is read and checked all the same, and the blob
  // is held by the import's lease.
  absl::Status CheckExisting(const images::TarEntry& entry, const Digest& name) {
    BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Digester> digester,
                           Digester::Create(name.algorithm()));
    BERTH_RETURN_IF_ERROR(Drain([&](absl::string_view chunk) {
      digester->Update(chunk);
      return absl::OkStatus();
    }));
    if (!(digester->Sum() == name)) {
      return Mismatch(entry, name, digester->Sum());
    }
    BERTH_RETURN_IF_ERROR(leases.AddResource(ctx, ctx.lease, {name.ToString(), "content"}));
    Emit(name, entry.size, entry.size, State::kExists);
    return absl::OkStatus();
  }

  // Streams the current entry into an ingest of its own and commits it; `name` (may be empty)
  // is the digest it must have.
  absl::StatusOr<ArchivedBlob> Store(const images::TarEntry& entry, const Digest& name,
                                     int64_t index) {
    content::WriterOptions wopts;
    wopts.ref = absl::StrCat("import-", ctx.lease, "-", index);
    wopts.total = entry.size;
    wopts.expected = name;
    ArchivedBlob blob;
    blob.size = entry.size;
    absl::StatusOr<std::unique_ptr<content::Writer>> writer = content.OpenWriter(ctx, wopts);
    if (writer.status().code() == absl::StatusCode::kAlreadyExists && !name.IsEmpty()) {
      BERTH_RETURN_IF_ERROR(CheckExisting(entry, name));
      blob.digest = name;
      return blob;  // compression is told by the descriptor for OCI blobs
    }
    BERTH_RETURN_IF_ERROR(writer.status());
    content::WriterSink sink(**writer, 0, entry.size, name);
    std::string head;
    int64_t reported = 0;
    if (!name.IsEmpty()) {
      Emit(name, 0, entry.size, State::kDownloading);
    }
    absl::Status st = Drain([&](absl::string_view chunk) {
      if (head.size() < 4) {
        absl::string_view more = chunk.substr(0, 4 - head.size());
        head.append(more.data(), more.size());
      }
      BERTH_RETURN_IF_ERROR(sink.Write(chunk));
      if (!name.IsEmpty() && sink.offset() - reported >= options.progress_step) {
        reported = sink.offset();
        Emit(name, reported, entry.size, State::kDownloading);
      }
      return absl::OkStatus();
    });
    if (st.ok()) {
      if (!name.IsEmpty()) {
        Emit(name, entry.size, entry.size, State::kVerifying);
      }
      if (!name.IsEmpty() && !(sink.digest() == name)) {
        (void)(*writer)->Close();
        st = Mismatch(entry, name, sink.digest());
      } else {
        st = sink.Commit({});
      }
    } else {
      (void)(*writer)->Close();
    }
    blob.digest = name.IsEmpty() ? sink.digest() : name;
    blob.compression = archive::DetectCompression(head);
    if (st.code() == absl::StatusCode::kAlreadyExists) {
      BERTH_RETURN_IF_ERROR(
          leases.AddResource(ctx, ctx.lease, {blob.digest.ToString(), "content"}));
      Emit(blob.digest, entry.size, entry.size, State::kExists);
      return blob;
    }
    if (!st.ok()) {
      (void)content.Abort(ctx, wopts.ref);
      return st;
    }
    Emit(blob.digest, entry.size, entry.size, State::kDone);
    return blob;
  }
};

}  // namespace

absl::StatusOr<ArchiveContents> ReceiveArchive(const Context& ctx, ByteSource& tar_stream,
                                               content::ContentStore& content,
                                               leases::LeaseManager& leases,
                                               const ReceiveOptions& options,
                                               const BlobEventFn& progress) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<images::TarReader> tar,
                         images::TarReader::Open(tar_stream, options.limits));
  Receiver receiver{ctx, content, leases, *tar, options, progress};
  ArchiveContents contents;
  std::set<std::string> seen;
  while (true) {
    BERTH_RETURN_IF_ERROR(ctx.Alive());
    BERTH_ASSIGN_OR_RETURN(std::optional<images::TarEntry> entry, tar->Next());
    if (!entry.has_value()) {
      break;
    }
    if (entry->type == images::TarEntry::Type::kDirectory) {
      continue;
    }
    if (entry->type == images::TarEntry::Type::kSymlink) {
      // docker save links a legacy <id>/layer.tar to the layer file manifest.json names: skipped,
      // never followed. Any other link is refused.
      if (!IsLegacyLayerLink(entry->path)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "archive: entry \"", entry->path, "\": a symlink (to \"", entry->link_target,
            "\"); an image archive holds files only"));
      }
      continue;
    }
    if (!seen.insert(entry->path).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive: entry \"", entry->path, "\" appears twice"));
    }
    if (IsDocument(entry->path)) {
      BERTH_ASSIGN_OR_RETURN(contents.documents[entry->path], receiver.ReadDocument(*entry));
      continue;
    }
    if (IsLegacyMetadata(entry->path)) {
      continue;  // Next() skips its data
    }
    BERTH_ASSIGN_OR_RETURN(std::optional<Digest> name, BlobName(entry->path));
    BERTH_ASSIGN_OR_RETURN(ArchivedBlob blob,
                           receiver.Store(*entry, name.value_or(Digest()), tar->entries()));
    contents.by_digest.emplace(blob.digest.ToString(), blob);
    contents.files.emplace(entry->path, std::move(blob));
  }
  return contents;
}

}  // namespace berth::imaged
