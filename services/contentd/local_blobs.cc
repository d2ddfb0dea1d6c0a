// LocalContentStore's Provider, Manager and IngestManager: reading blobs, their info and labels,
// deleting them, and the ingests in progress (see local_file_store.h for how the store is split).

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/filters/filter.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd::internal {
namespace {

absl::Status NotFoundContent(const Digest& digest) {
  return absl::NotFoundError(absl::StrCat("content ", digest.ToString(), ": not found"));
}

absl::Status NotFoundIngest(const std::string& ref) {
  return absl::NotFoundError(absl::StrCat("ingest ", ref, ": not found"));
}

class FileReader final : public content::Reader {
 public:
  FileReader(UniqueFd fd, int64_t size, Digest digest)
      : fd_(std::move(fd)), size_(size), digest_(std::move(digest)) {}

  int64_t Size() const override { return size_; }

  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) override {
    if (offset < 0 || offset > size_) {
      return absl::OutOfRangeError(absl::StrCat("content ", digest_.ToString(), ": offset ", offset,
                                                " is past the end (", size_, " bytes)"));
    }
    size = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(size), size_ - offset));
    while (true) {
      ssize_t n = ::pread(fd_.get(), buf, size, offset);
      if (n >= 0) {
        return static_cast<size_t>(n);
      }
      if (errno != EINTR) {
        return ErrnoStatus(errno, absl::StrCat("read content ", digest_.ToString()));
      }
    }
  }

 private:
  UniqueFd fd_;
  int64_t size_;
  Digest digest_;
};

}  // namespace

// --- content::Provider -----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<content::Reader>> FileStore::OpenReader(const Context& ctx,
                                                                       const Digest& digest) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<content::Info> info, meta_->GetBlob(ctx.ns, digest));
  if (!info.has_value()) {
    return NotFoundContent(digest);
  }
  std::string path = BlobPath(digest);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    // A row without its file breaks the store's invariant: the bytes are lost.
    return absl::DataLossError(
        ErrnoStatus(errno, absl::StrCat("content ", digest.ToString(), ": open ", path)).message());
  }
  return std::unique_ptr<content::Reader>(new FileReader(std::move(fd), info->size, digest));
}

// --- content::Manager ------------------------------------------------------------------------

absl::StatusOr<content::Info> FileStore::GetInfo(const Context& ctx, const Digest& digest) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<content::Info> info, meta_->GetBlob(ctx.ns, digest));
  if (!info.has_value()) {
    return NotFoundContent(digest);
  }
  if (ctx.proxy_consumer) {
    // containerd asks before it records a blob it found here (its shared content policy) and
    // before it reads one: from now on it may name it.
    BERTH_RETURN_IF_ERROR(meta_->ClaimForProxy(ctx.ns, digest));
  }
  return *std::move(info);
}

absl::StatusOr<content::Info> FileStore::Update(const Context& ctx, const content::Info& info,
                                                const std::vector<std::string>& fieldpaths) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<content::Info> current, meta_->GetBlob(ctx.ns, info.digest));
  if (!current.has_value()) {
    return NotFoundContent(info.digest);
  }
  content::Info updated = *std::move(current);
  BERTH_RETURN_IF_ERROR(ApplyLabelUpdate(&updated.labels, info.labels, fieldpaths,
                                         absl::StrCat("content ", info.digest.ToString())));
  updated.updated_at = absl::Now();
  BERTH_RETURN_IF_ERROR(
      meta_->SetBlobLabels(ctx.ns, info.digest, updated.labels, updated.updated_at));
  return updated;
}

absl::Status FileStore::Walk(const Context& ctx, const std::vector<std::string>& filters,
                             const std::function<absl::Status(const content::Info&)>& fn) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filters));
  // Collect first: fn may call back into the store.
  std::vector<content::Info> matched;
  {
    absl::MutexLock lock(&mu_);
    // A proxy consumer walks only to collect what its metadata does not name (containerd's
    // content GC deletes each such blob and stops at the first error): it is shown only what
    // berth does not hold.
    std::map<std::string, std::string> held;
    if (ctx.proxy_consumer) {
      BERTH_ASSIGN_OR_RETURN(held, HeldByBerthLocked(ctx.ns));
    }
    BERTH_RETURN_IF_ERROR(meta_->ForEachBlob(ctx.ns, [&](content::Info info) {
      if (held.count(info.digest.ToString()) == 0 &&
          filter.Match(content::BlobFilterAdaptor(info))) {
        matched.push_back(std::move(info));
      }
      return absl::OkStatus();
    }));
  }
  for (const content::Info& info : matched) {
    BERTH_RETURN_IF_ERROR(ctx.Alive());
    BERTH_RETURN_IF_ERROR(fn(info));
  }
  return absl::OkStatus();
}

absl::Status FileStore::Delete(const Context& ctx, const Digest& digest) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  std::vector<Removal> removed;
  {
    absl::MutexLock lock(&mu_);
    if (ctx.proxy_consumer) {
      BERTH_ASSIGN_OR_RETURN(auto held, HeldByBerthLocked(ctx.ns));
      if (auto it = held.find(digest.ToString()); it != held.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("content ", digest.ToString(), " is in use by berth (", it->second,
                         "): a request without a namespace header cannot delete it"));
      }
    }
    BERTH_ASSIGN_OR_RETURN(std::optional<int64_t> size, meta_->DeleteBlob(ctx.ns, digest));
    if (!size.has_value()) {
      return NotFoundContent(digest);
    }
    removed.push_back({ctx.ns, digest});
    RemoveUnreferencedFilesLocked(removed);
  }
  Publish(removed);
  return absl::OkStatus();
}

// --- content::IngestManager ------------------------------------------------------------------

absl::StatusOr<content::IngestStatus> FileStore::GetStatus(const Context& ctx,
                                                           const std::string& ref) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<IngestRow> row, meta_->GetIngest(ctx.ns, ref));
  if (!row.has_value()) {
    return NotFoundIngest(ref);
  }
  return StatusOf(*row);
}

absl::StatusOr<std::vector<content::IngestStatus>> FileStore::ListStatuses(
    const Context& ctx, const std::vector<std::string>& filters) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  BERTH_ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filters));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::vector<IngestRow> rows, meta_->ListIngests(ctx.ns));
  // As Walk: a proxy consumer lists ingests to abort those its metadata does not name, so it
  // is not shown the ones a lease holds or a writer has open.
  std::set<std::string> held;
  if (ctx.proxy_consumer) {
    GcGraph graph;
    BERTH_RETURN_IF_ERROR(LoadGcGraphLocked(ctx.ns, &graph));
    held = std::move(graph.leased_ingests);
  }
  std::vector<content::IngestStatus> out;
  for (const IngestRow& row : rows) {
    if (held.count(row.ref) != 0 || (ctx.proxy_consumer && active_.count(IngestKey(ctx.ns, row.ref)) != 0)) {
      continue;
    }
    content::IngestStatus status = StatusOf(row);
    if (filter.Match(content::IngestFilterAdaptor(status))) {
      out.push_back(std::move(status));
    }
  }
  return out;
}

absl::Status FileStore::Abort(const Context& ctx, const std::string& ref) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  absl::MutexLock lock(&mu_);
  BERTH_ASSIGN_OR_RETURN(std::optional<IngestRow> row, meta_->GetIngest(ctx.ns, ref));
  if (!row.has_value()) {
    return NotFoundIngest(ref);
  }
  if (ctx.proxy_consumer) {
    GcGraph graph;
    BERTH_RETURN_IF_ERROR(LoadGcGraphLocked(ctx.ns, &graph));
    if (graph.leased_ingests.count(ref) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("ingest ", ref, " is held by a berth lease: a request without a namespace "
                       "header cannot abort it"));
    }
  }
  // As containerd, an abort wins over an open writer: the writer's next call fails.
  auto it = active_.find(IngestKey(ctx.ns, ref));
  if (it != active_.end()) {
    it->second->aborted.store(true);
    active_.erase(it);
  }
  return RemoveIngestLocked(*row);
}

}  // namespace berth::contentd::internal
