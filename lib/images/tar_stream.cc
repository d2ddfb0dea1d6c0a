#include "lib/images/tar_stream.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/archive/compression.h"
#include "lib/base/status_macros.h"

namespace berth::images {

namespace {

constexpr size_t kChunk = 1 << 20;

}  // namespace

absl::StatusOr<std::string> NormaliseEntryPath(absl::string_view raw) {
  if (absl::StartsWith(raw, "/")) {
    return absl::InvalidArgumentError(absl::StrCat("entry \"", raw, "\": absolute path"));
  }
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(raw, '/')) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("entry \"", raw, "\": \"..\" leads outside the archive"));
    }
    parts.push_back(part);
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("entry \"", raw, "\": empty path"));
  }
  return absl::StrJoin(parts, "/");
}

// The decompressed stream libarchive reads, and the first error it met.
struct TarReader::Input {
  std::unique_ptr<archive::DecompressingSource> source;
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(kChunk);
  absl::Status status;

  static la_ssize_t Read(struct ::archive* a, void* data, const void** out) {
    auto* in = static_cast<Input*>(data);
    absl::StatusOr<size_t> n = in->source->Read(in->buf.get(), kChunk);
    if (!n.ok()) {
      in->status = n.status();
      archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
      return -1;
    }
    *out = in->buf.get();
    return static_cast<la_ssize_t>(*n);
  }
};

TarReader::TarReader(std::unique_ptr<Input> input, TarLimits limits)
    : input_(std::move(input)), limits_(limits) {}

TarReader::~TarReader() {
  if (archive_ != nullptr) {
    archive_read_free(archive_);
  }
}

absl::StatusOr<std::unique_ptr<TarReader>> TarReader::Open(ByteSource& source, TarLimits limits) {
  auto input = std::make_unique<Input>();
  BERTH_ASSIGN_OR_RETURN(input->source, archive::DecompressingSource::Create(source));
  std::unique_ptr<TarReader> reader(new TarReader(std::move(input), limits));
  reader->archive_ = archive_read_new();
  if (reader->archive_ == nullptr) {
    return absl::ResourceExhaustedError("archive_read_new failed");
  }
  archive_read_support_format_tar(reader->archive_);
  archive_read_support_format_gnutar(reader->archive_);
  if (archive_read_open(reader->archive_, reader->input_.get(), nullptr, &Input::Read,
                        nullptr) != ARCHIVE_OK) {
    return reader->Error("opening the archive");
  }
  return reader;
}

absl::Status TarReader::Error(absl::string_view where) {
  if (!input_->status.ok()) {
    return input_->status;
  }
  const char* msg = archive_error_string(archive_);
  return absl::InvalidArgumentError(absl::StrCat("archive: ", where, ": ",
                                                 msg != nullptr ? msg : "not a tar archive"));
}

absl::StatusOr<std::optional<TarEntry>> TarReader::Next() {
  struct archive_entry* e = nullptr;
  int r = archive_read_next_header(archive_, &e);
  if (r == ARCHIVE_EOF) {
    return std::nullopt;
  }
  if (r < ARCHIVE_WARN) {
    return Error(entries_ == 0 ? std::string("the first entry")
                               : absl::StrCat("after entry \"", current_, "\""));
  }
  const char* raw = archive_entry_pathname(e);
  if (raw == nullptr) {
    raw = archive_entry_pathname_utf8(e);
  }
  if (raw == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive: an entry without a name after \"", current_, "\""));
  }
  if (++entries_ > limits_.max_entries) {
    return absl::InvalidArgumentError(absl::StrCat("archive: entry \"", raw, "\": more than ",
                                                   limits_.max_entries, " entries"));
  }
  absl::StatusOr<std::string> path = NormaliseEntryPath(raw);
  if (!path.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("archive: ", path.status().message()));
  }
  current_ = *std::move(path);
  TarEntry entry;
  entry.path = current_;
  const mode_t type = archive_entry_filetype(e);
  if (archive_entry_hardlink(e) != nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive: entry \"", current_, "\": hard links are not allowed"));
  }
  if (type == AE_IFDIR) {
    entry.type = TarEntry::Type::kDirectory;
    return entry;
  }
  if (type == AE_IFLNK) {
    entry.type = TarEntry::Type::kSymlink;
    const char* target = archive_entry_symlink(e);
    entry.link_target = target != nullptr ? target : "";
    return entry;
  }
  if (type != AE_IFREG) {
    const char* what = type == AE_IFCHR   ? "a character device"
                       : type == AE_IFBLK ? "a block device"
                       : type == AE_IFIFO ? "a FIFO"
                                          : "not a regular file or directory";
    return absl::InvalidArgumentError(absl::StrCat("archive: entry \"", current_, "\": ", what,
                                                   "; an image archive holds files only"));
  }
  entry.size = archive_entry_size(e);
  if (entry.size < 0 || entry.size > limits_.max_bytes - bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive: entry \"", current_, "\" (", entry.size,
                     " bytes): the archive holds more than ", limits_.max_bytes, " bytes"));
  }
  bytes_ += entry.size;
  return entry;
}

absl::StatusOr<size_t> TarReader::Read(char* buf, size_t size) {
  la_ssize_t n = archive_read_data(archive_, buf, size);
  if (n < 0) {
    return Error(absl::StrCat("entry \"", current_, "\""));
  }
  return static_cast<size_t>(n);
}

struct TarWriter::Output {
  ByteSink& sink;
  absl::Status status;

  static la_ssize_t Write(struct ::archive* a, void* data, const void* buf, size_t size) {
    auto* out = static_cast<Output*>(data);
    absl::Status st = out->sink.Write(absl::string_view(static_cast<const char*>(buf), size));
    if (!st.ok()) {
      out->status = st;
      archive_set_error(a, EIO, "%s", std::string(st.message()).c_str());
      return -1;
    }
    return static_cast<la_ssize_t>(size);
  }
};

TarWriter::TarWriter(std::unique_ptr<Output> output) : output_(std::move(output)) {}

TarWriter::~TarWriter() {
  if (archive_ != nullptr) {
    archive_write_free(archive_);
  }
}

absl::StatusOr<std::unique_ptr<TarWriter>> TarWriter::Open(ByteSink& sink) {
  std::unique_ptr<TarWriter> writer(new TarWriter(std::make_unique<Output>(Output{sink, {}})));
  writer->archive_ = archive_write_new();
  if (writer->archive_ == nullptr) {
    return absl::ResourceExhaustedError("archive_write_new failed");
  }
  archive_write_set_format_pax_restricted(writer->archive_);
  archive_write_set_bytes_in_last_block(writer->archive_, 1);
  if (archive_write_open(writer->archive_, writer->output_.get(), nullptr, &Output::Write,
                         nullptr) != ARCHIVE_OK) {
    return writer->Error("opening");
  }
  return writer;
}

absl::Status TarWriter::Error(absl::string_view where) {
  if (!output_->status.ok()) {
    return output_->status;
  }
  const char* msg = archive_error_string(archive_);
  return absl::InternalError(
      absl::StrCat("writing the archive (", where, "): ", msg != nullptr ? msg : "unknown"));
}

absl::Status TarWriter::Header(absl::string_view path, bool directory, int64_t size) {
  struct archive_entry* e = archive_entry_new();
  if (e == nullptr) {
    return absl::ResourceExhaustedError("archive_entry_new failed");
  }
  std::string name(path);
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, directory ? AE_IFDIR : AE_IFREG);
  archive_entry_set_perm(e, directory ? 0755 : 0644);
  archive_entry_set_size(e, directory ? 0 : size);
  archive_entry_set_mtime(e, 0, 0);
  int r = archive_write_header(archive_, e);
  archive_entry_free(e);
  return r == ARCHIVE_OK ? absl::OkStatus() : Error(name);
}

absl::Status TarWriter::AddDirectory(absl::string_view path) { return Header(path, true, 0); }

absl::Status TarWriter::AddFile(absl::string_view path, absl::string_view data) {
  StringSource source{std::string(data)};
  return AddFile(path, static_cast<int64_t>(data.size()), source);
}

absl::Status TarWriter::AddFile(absl::string_view path, int64_t size, ByteSource& source) {
  BERTH_RETURN_IF_ERROR(Header(path, false, size));
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(kChunk);
  int64_t written = 0;
  while (true) {
    BERTH_ASSIGN_OR_RETURN(size_t n, source.Read(buf.get(), kChunk));
    if (n == 0) {
      break;
    }
    if (written + static_cast<int64_t>(n) > size) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": more than the ", size, " bytes expected"));
    }
    if (archive_write_data(archive_, buf.get(), n) != static_cast<la_ssize_t>(n)) {
      return Error(path);
    }
    written += static_cast<int64_t>(n);
  }
  if (written != size) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", written, " bytes where ", size, " were expected"));
  }
  return absl::OkStatus();
}

absl::Status TarWriter::Close() {
  if (closed_) {
    return absl::OkStatus();
  }
  closed_ = true;
  if (archive_write_close(archive_) != ARCHIVE_OK) {
    return Error("closing");
  }
  return output_->sink.Close();
}

}  // namespace berth::images
