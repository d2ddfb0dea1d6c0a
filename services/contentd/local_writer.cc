// LocalContentStore's Ingester: OpenWriter, the writer, and Commit (see local_content_store.h for
// the write-through and crash rules, local_file_store.h for how the store is split).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "lib/base/identifiers.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd::internal {
namespace {

namespace fs = std::filesystem;

constexpr size_t kReadChunk = 1 << 20;

// How long OpenWriter waits for a ref another writer holds (containerd's store: ten tries,
// each after a random sleep below 1, 2, 4 ... 512 ms, so up to about a second in all).
constexpr int kLockRetries = 10;

absl::Duration LockBackoff(int retry) {
  thread_local absl::BitGen gen;
  return absl::Milliseconds(absl::Uniform<int64_t>(gen, 0, int64_t{1} << retry));
}

absl::Status LockedError(const std::string& ref) {
  return absl::UnavailableError(absl::StrCat("ref ", ref, " is locked by another writer"));
}

absl::Status WriteAll(int fd, const char* data, size_t size, absl::string_view what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("write ", what));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Hashes the first `*size` bytes of fd (all of it when *size < 0, storing the length read).
absl::Status HashFile(int fd, Digester* digester, int64_t* size, absl::string_view what) {
  std::string buf(kReadChunk, '\0');
  int64_t offset = 0;
  int64_t limit = *size;
  while (limit < 0 || offset < limit) {
    size_t want = buf.size();
    if (limit >= 0) {
      want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(want), limit - offset));
    }
    ssize_t n = ::pread(fd, buf.data(), want, offset);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("read ", what));
    }
    if (n == 0) {
      break;
    }
    digester->Update(buf.data(), static_cast<size_t>(n));
    offset += n;
  }
  *size = offset;
  return absl::OkStatus();
}

class FileWriter final : public content::Writer {
 public:
  FileWriter(FileStore* store, Context ctx, IngestRow row, std::shared_ptr<ActiveIngest> active,
             UniqueFd fd, std::unique_ptr<Digester> digester, int64_t offset)
      : store_(store),
        ctx_(std::move(ctx)),
        row_(std::move(row)),
        key_(IngestKey(row_.ns, row_.ref)),
        active_(std::move(active)),
        fd_(std::move(fd)),
        digester_(std::move(digester)),
        offset_(offset) {
    active_->offset.store(offset_);
  }

  ~FileWriter() override {
    if (!released_) {
      Close().IgnoreError();
    }
  }

  absl::StatusOr<content::IngestStatus> Status() override {
    BERTH_RETURN_IF_ERROR(CheckUsable());
    content::IngestStatus status;
    status.ref = row_.ref;
    status.offset = offset_;
    status.total = row_.total;
    status.expected = row_.expected;
    status.started_at = row_.started_at;
    int64_t updated = active_->updated_ns.load();
    status.updated_at = updated != 0 ? FromNanos(updated) : row_.started_at;
    return status;
  }

  Digest CurrentDigest() override { return digester_->Sum(); }

  // Write-through: when Write returns OK the bytes are in the file (the page cache), so an
  // acknowledged write survives the daemon crashing; only Commit pays for an fsync.
  absl::Status Write(absl::string_view data) override {
    BERTH_RETURN_IF_ERROR(CheckUsable());
    if (absl::Status st = WriteAll(fd_.get(), data.data(), data.size(), row_.ref); !st.ok()) {
      broken_ = st;  // the file holds an unknown prefix of data: resuming re-reads it
      return st;
    }
    digester_->Update(data);
    // Write-behind: the kernel starts writing these pages now (without waiting), so Commit's
    // fdatasync finds most of the blob on disk already instead of writing all of it then.
    (void)::sync_file_range(fd_.get(), offset_, static_cast<off_t>(data.size()),
                            SYNC_FILE_RANGE_WRITE);
    offset_ += static_cast<int64_t>(data.size());
    active_->offset.store(offset_);
    active_->updated_ns.store(ToNanos(absl::Now()));
    return absl::OkStatus();
  }

  absl::Status Truncate(int64_t size) override {
    BERTH_RETURN_IF_ERROR(CheckUsable());
    if (size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ingest ", row_.ref, ": truncate to ", size, " is not supported (only 0)"));
    }
    if (::ftruncate(fd_.get(), 0) != 0) {
      return ErrnoStatus(errno, absl::StrCat("truncate ingest ", row_.ref));
    }
    BERTH_ASSIGN_OR_RETURN(digester_, Digester::Create(digester_->algorithm()));
    offset_ = 0;
    active_->offset.store(0);
    active_->updated_ns.store(ToNanos(absl::Now()));
    return absl::OkStatus();
  }

  absl::Status Commit(int64_t size, const Digest& expected,
                      const content::Labels& labels) override {
    if (released_) {
      return absl::FailedPreconditionError(absl::StrCat("ingest ", row_.ref, ": writer is closed"));
    }
    absl::Status st = DoCommit(size, expected, labels);
    Release();
    return st;
  }

  absl::Status Close() override {
    if (!released_) {
      Release();
    }
    return absl::OkStatus();
  }

 private:
  absl::Status CheckUsable() {
    if (released_) {
      return absl::FailedPreconditionError(absl::StrCat("ingest ", row_.ref, ": writer is closed"));
    }
    if (!broken_.ok()) {
      return broken_;
    }
    if (active_->aborted.load()) {
      return absl::NotFoundError(absl::StrCat("ingest ", row_.ref, ": aborted"));
    }
    return absl::OkStatus();
  }

  // The digest of the data under `expected`'s algorithm (the running one is sha256 unless the
  // writer was opened with another expected digest).
  absl::StatusOr<Digest> ActualDigest(const Digest& expected) {
    Digest actual = digester_->Sum();
    if (expected.IsEmpty() || expected.algorithm() == actual.algorithm()) {
      return actual;
    }
    BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Digester> other, Digester::Create(expected.algorithm()));
    int64_t hashed = offset_;
    BERTH_RETURN_IF_ERROR(HashFile(fd_.get(), other.get(), &hashed, row_.ref));
    return other->Sum();
  }

  absl::Status DoCommit(int64_t size, Digest expected, const content::Labels& labels) {
    BERTH_RETURN_IF_ERROR(CheckUsable());
    BERTH_RETURN_IF_ERROR(ValidateLabels(labels));
    // What the writer was opened with stands in for what Commit leaves out.
    if (size <= 0) {
      size = row_.total;
    }
    if (expected.IsEmpty()) {
      expected = row_.expected;
    }
    if (size > 0 && size != offset_) {
      return absl::FailedPreconditionError(
          absl::StrCat("unexpected commit size ", offset_, ", expected ", size));
    }
    BERTH_ASSIGN_OR_RETURN(Digest actual, ActualDigest(expected));
    if (!expected.IsEmpty() && actual != expected) {
      return absl::FailedPreconditionError(absl::StrCat(
          "unexpected commit digest ", actual.ToString(), ", expected ", expected.ToString()));
    }
    if (::fdatasync(fd_.get()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fsync ingest ", row_.ref));
    }
    fd_.Reset();
    return store_->CommitIngest(ctx_, row_, active_, actual, offset_, labels);
  }

  void Release() {
    released_ = true;
    fd_.Reset();
    store_->ReleaseRef(key_, active_);
  }

  FileStore* const store_;
  const Context ctx_;
  const IngestRow row_;
  const std::string key_;
  const std::shared_ptr<ActiveIngest> active_;
  UniqueFd fd_;
  std::unique_ptr<Digester> digester_;
  int64_t offset_;
  absl::Status broken_;  // a failed write: the writer is unusable
  bool released_ = false;
};

absl::Status ValidateWriterOptions(const Context& ctx, const content::WriterOptions& opts) {
  BERTH_RETURN_IF_ERROR(ValidateNamespace(ctx.ns));
  if (opts.ref.empty()) {
    return absl::InvalidArgumentError("ref must not be empty");
  }
  if (opts.total < 0) {
    return absl::InvalidArgumentError(absl::StrCat("ingest ", opts.ref, ": negative total"));
  }
  return absl::OkStatus();
}

// The running digest of what the data file holds (the file is the truth about what was
// written); *offset receives its length.
absl::StatusOr<std::unique_ptr<Digester>> ResumeDigest(int fd, const IngestRow& row,
                                                       int64_t* offset) {
  std::string alg = row.expected.IsEmpty() ? "sha256" : row.expected.algorithm();
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Digester> digester, Digester::Create(alg));
  *offset = -1;
  BERTH_RETURN_IF_ERROR(HashFile(fd, digester.get(), offset, row.ref));
  return digester;
}

}  // namespace

// --- opening ---------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<content::Writer>> FileStore::OpenWriter(
    const Context& ctx, const content::WriterOptions& opts) {
  BERTH_RETURN_IF_ERROR(ValidateWriterOptions(ctx, opts));
  auto active = std::make_shared<ActiveIngest>();
  BERTH_ASSIGN_OR_RETURN(OpenedIngest opened, LockAndOpenIngest(ctx, opts, active));
  int64_t offset = 0;
  absl::StatusOr<std::unique_ptr<Digester>> digester =
      ResumeDigest(opened.fd.get(), opened.row, &offset);
  if (!digester.ok()) {
    ReleaseRef(IngestKey(ctx.ns, opts.ref), active);
    return digester.status();
  }
  // A resumed ingest was last updated when its data was last written (as containerd reports).
  struct stat sb;
  if (offset > 0 && ::fstat(opened.fd.get(), &sb) == 0) {
    active->updated_ns.store(ToNanos(absl::TimeFromTimespec(sb.st_mtim)));
  }
  return std::unique_ptr<content::Writer>(new FileWriter(this, ctx, std::move(opened.row), active,
                                                         std::move(opened.fd), *std::move(digester),
                                                         offset));
}

absl::StatusOr<FileStore::OpenedIngest> FileStore::LockAndOpenIngest(
    const Context& ctx, const content::WriterOptions& opts,
    const std::shared_ptr<ActiveIngest>& active) {
  const std::string key = IngestKey(ctx.ns, opts.ref);
  for (int retry = 0;; ++retry) {
    {
      absl::MutexLock lock(&mu_);
      BERTH_RETURN_IF_ERROR(CheckLeaseLocked(ctx.ns, ctx.lease));
      BERTH_RETURN_IF_ERROR(CheckNotCommittedLocked(ctx, opts.expected));
      if (active_.count(key) == 0) {
        BERTH_ASSIGN_OR_RETURN(std::optional<IngestRow> existing,
                               meta_->GetIngest(ctx.ns, opts.ref));
        BERTH_ASSIGN_OR_RETURN(OpenedIngest opened,
                               existing.has_value()
                                   ? ResumeIngestLocked(ctx, opts, *std::move(existing))
                                   : CreateIngestLocked(ctx, opts));
        active_[key] = active;
        return opened;
      }
    }
    if (retry == kLockRetries) {
      return LockedError(opts.ref);
    }
    BERTH_RETURN_IF_ERROR(ctx.Alive());
    absl::SleepFor(LockBackoff(retry));
  }
}

absl::Status FileStore::CheckNotCommittedLocked(const Context& ctx, const Digest& expected) {
  if (expected.IsEmpty()) {
    return absl::OkStatus();
  }
  BERTH_ASSIGN_OR_RETURN(bool exists, meta_->BlobExists(ctx.ns, expected));
  if (!exists) {
    return absl::OkStatus();
  }
  // As containerd: the lease now holds the existing blob too.
  BERTH_RETURN_IF_ERROR(HoldForCallerLocked(ctx, expected));
  return absl::AlreadyExistsError(
      absl::StrCat("content ", expected.ToString(), ": already exists"));
}

// An ingest's row (made, resumed, its lease noted) is not fsync'd: it survives contentd being
// killed (sqlite's WAL), and a power cut before the next fsync'd commit only loses an ingest,
// whose directory Open removes as it removes any ingest without a row.
constexpr bool kIngestRowsDurable = false;

absl::StatusOr<FileStore::OpenedIngest> FileStore::ResumeIngestLocked(
    const Context& ctx, const content::WriterOptions& opts, IngestRow row) {
  bool changed = false;
  if (opts.total > 0 && opts.total != row.total) {
    row.total = opts.total;
    changed = true;
  }
  if (!opts.expected.IsEmpty() && opts.expected != row.expected) {
    row.expected = opts.expected;
    changed = true;
  }
  // Not fsync'd (kIngestRowsDurable): an ingest row lost to a power cut is an ingest to start
  // again; nothing is visible until CommitIngest, whose transaction is.
  BERTH_RETURN_IF_ERROR(meta_->Transaction(
      [&]() -> absl::Status {
        if (changed) {
          BERTH_RETURN_IF_ERROR(meta_->UpdateIngest(row));
        }
        if (!ctx.lease.empty()) {
          return meta_->AddLeaseResource(ctx.ns, ctx.lease, "ingests", opts.ref);
        }
        return absl::OkStatus();
      },
      kIngestRowsDurable));
  std::string path = IngestDataPath(row.id);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", path));
  }
  return OpenedIngest{std::move(row), std::move(fd)};
}

absl::StatusOr<FileStore::OpenedIngest> FileStore::CreateIngestLocked(
    const Context& ctx, const content::WriterOptions& opts) {
  IngestRow row;
  row.ns = ctx.ns;
  row.ref = opts.ref;
  row.id = Sha256Of(IngestKey(ctx.ns, opts.ref)).hex();
  row.total = opts.total;
  row.expected = opts.expected;
  row.started_at = absl::Now();
  // Files first: a crash before the row commits leaves a directory Open() removes.
  std::string dir = IngestDir(row.id);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkdir ", dir));
  }
  std::string path = IngestDataPath(row.id);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  absl::Status st = fd.valid() ? absl::OkStatus() : ErrnoStatus(errno, "open " + path);
  if (st.ok()) {
    // Not fsync'd: a power cut that loses the row leaves the directory, which Open removes.
    st = meta_->Transaction(
        [&]() -> absl::Status {
          BERTH_RETURN_IF_ERROR(meta_->RegisterNamespace(ctx.ns));
          BERTH_RETURN_IF_ERROR(meta_->InsertIngest(row));
          if (!ctx.lease.empty()) {
            return meta_->AddLeaseResource(ctx.ns, ctx.lease, "ingests", opts.ref);
          }
          return absl::OkStatus();
        },
        kIngestRowsDurable);
  }
  if (!st.ok()) {
    fd.Reset();
    fs::remove_all(dir, ec);
    return st;
  }
  return OpenedIngest{std::move(row), std::move(fd)};
}

void FileStore::ReleaseRef(const std::string& key, const std::shared_ptr<ActiveIngest>& active) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(key);
  if (it != active_.end() && it->second == active) {
    active_.erase(it);
  }
}

}  // namespace berth::contentd::internal
