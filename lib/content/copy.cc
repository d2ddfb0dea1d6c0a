#include "lib/content/copy.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"
#include "lib/content/blob_stream.h"

namespace berth::content {
namespace {

// Adds `labels` to the committed blob `digest` (keeping its others).
absl::Status MergeLabels(ContentStore& store, const Context& ctx, const Digest& digest,
                         const Labels& labels) {
  if (labels.empty()) {
    return absl::OkStatus();
  }
  Info info;
  info.digest = digest;
  info.labels = labels;
  std::vector<std::string> paths;
  paths.reserve(labels.size());
  for (const auto& [key, value] : labels) {
    paths.push_back(absl::StrCat("labels.", key));
  }
  return store.Update(ctx, info, paths).status();
}

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(status.message(), context));
}

// One Copy: the writer it holds and the way out of each failure.
class Copier {
 public:
  Copier(const Context& ctx, ContentStore& store, const std::string& ref, ByteSource& source,
         const oci::Descriptor& desc, const CopyOptions& options)
      : ctx_(ctx), store_(store), ref_(ref), source_(source), desc_(desc), options_(options) {}

  absl::StatusOr<CopyResult> Run() {
    WriterOptions wopts;
    wopts.ref = ref_;
    wopts.total = desc_.size;
    wopts.expected = desc_.digest;
    absl::StatusOr<std::unique_ptr<Writer>> writer = store_.OpenWriter(ctx_, wopts);
    if (absl::IsAlreadyExists(writer.status()) && !desc_.digest.IsEmpty()) {
      return Existing(desc_.digest);
    }
    BERTH_RETURN_IF_ERROR(writer.status());
    writer_ = *std::move(writer);
    absl::StatusOr<CopyResult> result = Send();
    if (writer_ != nullptr) {
      writer_->Close().IgnoreError();
    }
    return result;
  }

 private:
  absl::StatusOr<CopyResult> Existing(const Digest& digest) {
    BERTH_RETURN_IF_ERROR(MergeLabels(store_, ctx_, digest, options_.labels));
    CopyResult result;
    result.digest = digest;
    absl::StatusOr<Info> info = store_.GetInfo(ctx_, digest);
    result.size = info.ok() ? info->size : desc_.size;
    result.already_existed = true;
    return result;
  }

  absl::StatusOr<int64_t> Resume() {
    BERTH_ASSIGN_OR_RETURN(IngestStatus status, writer_->Status());
    int64_t offset = status.offset;
    if (desc_.size > 0 && offset > desc_.size) {
      BERTH_RETURN_IF_ERROR(writer_->Truncate(0));
      offset = 0;
    }
    if (offset == 0) {
      return 0;
    }
    BERTH_ASSIGN_OR_RETURN(int64_t skipped, source_.Skip(offset));
    if (skipped < offset) {
      return absl::FailedPreconditionError(
          absl::StrCat("ingest ", ref_, " is already at offset ", offset, " but ",
                       options_.source_name, " has only ", skipped, " bytes"));
    }
    if (options_.on_resume) {
      options_.on_resume(offset);
    }
    return offset;
  }

  // The ingest cannot become the blob asked for: drop it.
  absl::Status Abandon(absl::string_view why) {
    writer_->Close().IgnoreError();
    writer_ = nullptr;
    store_.Abort(ctx_, ref_).IgnoreError();
    return absl::FailedPreconditionError(
        absl::StrCat(why, "; ingest ", ref_, " aborted, nothing stored"));
  }

  absl::StatusOr<CopyResult> Send() {
    BERTH_ASSIGN_OR_RETURN(const int64_t start, Resume());
    WriterSink sink(*writer_, start, desc_.size, desc_.digest);
    const std::string kept = absl::StrCat("; ingest ", ref_, " kept at offset ");
    std::vector<char> buf(kStreamChunk);
    for (;;) {
      if (absl::Status alive = ctx_.Alive(); !alive.ok()) {
        return WithContext(alive, absl::StrCat(kept, sink.offset()));
      }
      absl::StatusOr<size_t> n = source_.Read(buf.data(), buf.size());
      if (!n.ok()) {
        return WithContext(n.status(), absl::StrCat(kept, sink.offset()));
      }
      if (*n == 0) {
        break;
      }
      if (desc_.size > 0 && sink.offset() + static_cast<int64_t>(*n) > desc_.size) {
        return Abandon(absl::StrCat(options_.source_name, " is longer than ", options_.size_name,
                                    " ", desc_.size));
      }
      BERTH_RETURN_IF_ERROR(sink.Write(absl::string_view(buf.data(), *n)));
      if (options_.progress) {
        options_.progress(sink.offset());
      }
    }
    BERTH_RETURN_IF_ERROR(sink.Close());
    if (desc_.size > 0 && sink.offset() < desc_.size) {
      return absl::FailedPreconditionError(absl::StrCat(options_.source_name, " ended after ",
                                                        sink.offset(), " of ", desc_.size,
                                                        " bytes", kept, sink.offset()));
    }
    Digest actual = writer_->CurrentDigest();
    if (actual.IsEmpty() && start == 0) {
      actual = sink.digest();
    }
    if (!desc_.digest.IsEmpty() && !actual.IsEmpty() && actual != desc_.digest) {
      return Abandon(absl::StrCat("digest mismatch: ", options_.source_name, " is ",
                                  actual.ToString(), ", expected ", desc_.digest.ToString()));
    }
    const int64_t size = sink.offset();
    absl::Status committed = sink.Commit(options_.labels);
    Writer* writer = writer_.get();
    if (actual.IsEmpty()) {
      actual = writer->CurrentDigest();
    }
    if (absl::IsFailedPrecondition(committed)) {
      return Abandon(committed.message());
    }
    writer_ = nullptr;  // Commit released it
    if (absl::IsAlreadyExists(committed)) {
      // The same bytes were committed here before; the ingest is gone, the blob is there.
      absl::StatusOr<CopyResult> existing = Existing(actual);
      if (existing.ok()) {
        existing->resumed_from = start;
      }
      return existing;
    }
    BERTH_RETURN_IF_ERROR(committed);
    CopyResult result;
    result.digest = actual;
    result.size = size;
    result.resumed_from = start;
    return result;
  }

  const Context& ctx_;
  ContentStore& store_;
  const std::string& ref_;
  ByteSource& source_;
  const oci::Descriptor& desc_;
  const CopyOptions& options_;
  std::unique_ptr<Writer> writer_;
};

}  // namespace

absl::StatusOr<CopyResult> Copy(const Context& ctx, ContentStore& store, const std::string& ref,
                                ByteSource& source, const oci::Descriptor& desc,
                                const CopyOptions& options) {
  return Copier(ctx, store, ref, source, desc, options).Run();
}

}  // namespace berth::content
