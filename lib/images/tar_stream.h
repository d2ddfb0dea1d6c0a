#pragma once

// Image tarballs as streams, for imaged's import and export and for any tool that reads or
// writes them without a daemon: TarReader walks an untrusted tar (plain, gzip or zstd, told by
// the magic bytes) entry by entry, refusing what an image archive never needs; TarWriter writes
// one (pax, regular files and directories only). Both are libarchive underneath and never touch
// the filesystem.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/byte_stream.h"

struct archive;

namespace berth::images {

struct TarEntry {
  enum class Type { kFile, kDirectory, kSymlink };
  std::string path;  // normalised: relative, no "." or empty components, no trailing slash
  Type type = Type::kFile;
  int64_t size = 0;         // of a regular file's data
  std::string link_target;  // a symlink's, as written (never followed here)
};

struct TarLimits {
  int64_t max_entries = 1 << 16;           // entries of any type
  int64_t max_bytes = int64_t{64} << 30;  // the sum of the entries' sizes
};

// Reads one tar front to back; the current entry's data is read through ByteSource. Symlinks
// are reported for the caller to refuse or skip. Errors are InvalidArgument naming the entry:
// an absolute path, a ".." component, a path that is empty, a hard link, device, FIFO or socket; more than max_entries entries or max_bytes of
// data (checked against each header before its data is read); a stream that is not a tar or
// is cut short. The source's own errors come back unchanged. Not thread-safe; `source` must
// outlive the reader.
class TarReader : public ByteSource {
 public:
  static absl::StatusOr<std::unique_ptr<TarReader>> Open(ByteSource& source, TarLimits limits);
  ~TarReader() override;
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // The next entry (its unread data is skipped), or nullopt after the last one.
  absl::StatusOr<std::optional<TarEntry>> Next();
  // The current entry's data; 0 at its end.
  absl::StatusOr<size_t> Read(char* buf, size_t size) override;

  int64_t entries() const { return entries_; }

 private:
  struct Input;
  TarReader(std::unique_ptr<Input> input, TarLimits limits);
  absl::Status Error(absl::string_view where);

  std::unique_ptr<Input> input_;
  const TarLimits limits_;
  struct archive* archive_ = nullptr;
  std::string current_;
  int64_t entries_ = 0;
  int64_t bytes_ = 0;
};

// Normalises a tar entry's name as TarReader does; InvalidArgument for an absolute path, a ".."
// component or nothing left.
absl::StatusOr<std::string> NormaliseEntryPath(absl::string_view raw);

// Writes a tar (pax) to `sink`: regular files 0644 and directories 0755, owned by 0:0, mtime 0,
// so the same content makes the same bytes. Close() writes the end blocks and closes the sink.
// Not thread-safe; `sink` must outlive the writer.
class TarWriter {
 public:
  static absl::StatusOr<std::unique_ptr<TarWriter>> Open(ByteSink& sink);
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  absl::Status AddDirectory(absl::string_view path);
  absl::Status AddFile(absl::string_view path, absl::string_view data);
  // Exactly `size` bytes from `source`; FailedPrecondition if it ends sooner or has more.
  absl::Status AddFile(absl::string_view path, int64_t size, ByteSource& source);
  absl::Status Close();

 private:
  struct Output;
  explicit TarWriter(std::unique_ptr<Output> output);
  absl::Status Header(absl::string_view path, bool directory, int64_t size);
  absl::Status Error(absl::string_view where);

  std::unique_ptr<Output> output_;
  struct archive* archive_ = nullptr;
  bool closed_ = false;
};

}  // namespace berth::images
