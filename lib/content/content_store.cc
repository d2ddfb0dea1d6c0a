#include "lib/content/content_store.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace berth::content {

filters::Adaptor BlobFilterAdaptor(const Info& info) {
  return filters::MakeAdaptor(
      [&info](absl::string_view field) -> std::optional<std::string> {
        if (field == "digest") {
          return info.digest.ToString();
        }
        if (field == "size") {
          return absl::StrCat(info.size);
        }
        return std::nullopt;
      },
      &info.labels);
}

filters::Adaptor IngestFilterAdaptor(const IngestStatus& status) {
  return filters::MakeAdaptor(
      [&status](absl::string_view field) -> std::optional<std::string> {
        if (field == "ref") {
          return status.ref;
        }
        if (field == "expected" && !status.expected.IsEmpty()) {
          return status.expected.ToString();
        }
        return std::nullopt;
      },
      nullptr);
}

absl::StatusOr<std::string> ReadBlob(Provider& provider, const Context& ctx,
                                     const Digest& digest) {
  absl::StatusOr<std::unique_ptr<Reader>> reader = provider.OpenReader(ctx, digest);
  if (!reader.ok()) {
    return reader.status();
  }
  return ReadBlob(**reader, digest);
}

absl::StatusOr<std::string> ReadBlob(Reader& reader, const Digest& digest) {
  int64_t size = reader.Size();
  std::string out;
  out.resize(static_cast<size_t>(size));
  int64_t done = 0;
  while (done < size) {
    absl::StatusOr<size_t> n =
        reader.ReadAt(done, out.data() + done, static_cast<size_t>(size - done));
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return absl::DataLossError(absl::StrCat("content ", digest.ToString(), ": short read at ",
                                              done, " of ", size, " bytes"));
    }
    done += static_cast<int64_t>(*n);
  }
  return out;
}

absl::Status WriteBlob(Ingester& ingester, const Context& ctx, const std::string& ref,
                       absl::string_view data, const Digest& expected, const Labels& labels) {
  WriterOptions opts;
  opts.ref = ref;
  opts.total = static_cast<int64_t>(data.size());
  opts.expected = expected;
  absl::StatusOr<std::unique_ptr<Writer>> writer = ingester.OpenWriter(ctx, opts);
  if (absl::IsAlreadyExists(writer.status())) {
    return absl::OkStatus();
  }
  if (!writer.ok()) {
    return writer.status();
  }
  // A resumed ingest may hold bytes from an earlier attempt; start over rather than trust them.
  absl::StatusOr<IngestStatus> status = (*writer)->Status();
  if (!status.ok()) {
    (*writer)->Close().IgnoreError();
    return status.status();
  }
  if (status->offset != 0) {
    if (absl::Status st = (*writer)->Truncate(0); !st.ok()) {
      (*writer)->Close().IgnoreError();
      return st;
    }
  }
  if (absl::Status st = (*writer)->Write(data); !st.ok()) {
    (*writer)->Close().IgnoreError();
    return st;
  }
  absl::Status st = (*writer)->Commit(static_cast<int64_t>(data.size()), expected, labels);
  if (absl::IsAlreadyExists(st)) {
    return absl::OkStatus();
  }
  return st;
}

}  // namespace berth::content
