#include "services/contentd/local_content_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "containerd/events/content.pb.h"
#include "lib/base/identifiers.h"
#include "lib/base/logging.h"
#include "lib/filters/filter.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd {

namespace internal {
namespace {

namespace fs = std::filesystem;

constexpr size_t kReadChunk = 1 << 20;

const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      R"sql(
CREATE TABLE namespaces (
  name TEXT PRIMARY KEY,
  labels BLOB NOT NULL DEFAULT x'',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE blobs (
  ns TEXT NOT NULL,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  labels BLOB NOT NULL DEFAULT x'',
  PRIMARY KEY (ns, digest)
) WITHOUT ROWID;
CREATE INDEX blobs_by_digest ON blobs (digest);
CREATE TABLE ingests (
  ns TEXT NOT NULL,
  ref TEXT NOT NULL,
  id TEXT NOT NULL UNIQUE,
  total INTEGER NOT NULL,
  expected TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  PRIMARY KEY (ns, ref)
);
CREATE TABLE leases (
  ns TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  labels BLOB NOT NULL DEFAULT x'',
  PRIMARY KEY (ns, id)
);
CREATE TABLE lease_resources (
  ns TEXT NOT NULL,
  lease TEXT NOT NULL,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  PRIMARY KEY (ns, lease, type, id),
  FOREIGN KEY (ns, lease) REFERENCES leases (ns, id) ON DELETE CASCADE
);
CREATE INDEX lease_resources_by_resource ON lease_resources (ns, type, id);
)sql",
  };
  return *migrations;
}

absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset(other.Release());
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

absl::Status FsyncPath(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY));
  if (!fd.valid()) {
    return ErrnoError(errno, absl::StrCat("open ", path));
  }
  if (::fsync(fd.get()) != 0) {
    return ErrnoError(errno, absl::StrCat("fsync ", path));
  }
  return absl::OkStatus();
}

// mkdir that tolerates an existing directory; fsyncs the parent when it created one.
absl::Status EnsureDir(const std::string& path, const std::string& parent) {
  if (::mkdir(path.c_str(), 0755) == 0) {
    return parent.empty() ? absl::OkStatus() : FsyncPath(parent);
  }
  if (errno == EEXIST) {
    return absl::OkStatus();
  }
  return ErrnoError(errno, absl::StrCat("mkdir ", path));
}

absl::Status WriteAll(int fd, const char* data, size_t size, absl::string_view what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoError(errno, absl::StrCat("write ", what));
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
      return ErrnoError(errno, absl::StrCat("read ", what));
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

absl::Status ValidateRef(const std::string& ref) {
  if (ref.empty()) {
    return absl::InvalidArgumentError("ref must not be empty");
  }
  return absl::OkStatus();
}

absl::Status NotFoundContent(const Digest& digest) {
  return absl::NotFoundError(absl::StrCat("content ", digest.ToString(), ": not found"));
}

absl::Status NotFoundIngest(const std::string& ref) {
  return absl::NotFoundError(absl::StrCat("ingest ", ref, ": not found"));
}

absl::Status LockedError(const std::string& ref) {
  return absl::UnavailableError(absl::StrCat("ref ", ref, " is locked by another writer"));
}

absl::StatusOr<content::Info> InfoFromRow(const sqlite::Statement& st, int first) {
  absl::StatusOr<Digest> digest = Digest::Parse(st.Text(first));
  if (!digest.ok()) {
    return absl::DataLossError(
        absl::StrCat("metadata.db holds a malformed digest: ", digest.status().message()));
  }
  absl::StatusOr<LabelMap> labels = DecodeLabels(st.Text(first + 4));
  if (!labels.ok()) {
    return labels.status();
  }
  content::Info info;
  info.digest = *digest;
  info.size = st.Int(first + 1);
  info.created_at = FromNanos(st.Int(first + 2));
  info.updated_at = FromNanos(st.Int(first + 3));
  info.labels = std::move(*labels);
  return info;
}

constexpr absl::string_view kBlobColumns = "digest, size, created_at, updated_at, labels";

absl::StatusOr<IngestRow> IngestFromRow(const sqlite::Statement& st) {
  IngestRow row;
  row.ns = st.Text(0);
  row.ref = st.Text(1);
  row.id = st.Text(2);
  row.total = st.Int(3);
  std::string expected = st.Text(4);
  if (!expected.empty()) {
    absl::StatusOr<Digest> d = Digest::Parse(expected);
    if (!d.ok()) {
      return absl::DataLossError(absl::StrCat("metadata.db: ingest ", row.ref,
                                              " has a malformed digest: ", expected));
    }
    row.expected = *d;
  }
  row.started_at = FromNanos(st.Int(5));
  return row;
}

constexpr absl::string_view kIngestColumns = "ns, ref, id, total, expected, started_at";

// --- Reader ---------------------------------------------------------------------------------

class FileReader final : public content::Reader {
 public:
  FileReader(UniqueFd fd, int64_t size, Digest digest)
      : fd_(std::move(fd)), size_(size), digest_(std::move(digest)) {}

  int64_t Size() const override { return size_; }

  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) override {
    if (offset < 0 || offset > size_) {
      return absl::OutOfRangeError(absl::StrCat("content ", digest_.ToString(), ": offset ",
                                                offset, " is past the end (", size_, " bytes)"));
    }
    size = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(size), size_ - offset));
    while (true) {
      ssize_t n = ::pread(fd_.get(), buf, size, offset);
      if (n >= 0) {
        return static_cast<size_t>(n);
      }
      if (errno != EINTR) {
        return ErrnoError(errno, absl::StrCat("read content ", digest_.ToString()));
      }
    }
  }

 private:
  UniqueFd fd_;
  int64_t size_;
  Digest digest_;
};

// --- Writer ---------------------------------------------------------------------------------

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
    if (absl::Status st = CheckUsable(); !st.ok()) {
      return st;
    }
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
    if (absl::Status st = CheckUsable(); !st.ok()) {
      return st;
    }
    if (absl::Status st = WriteAll(fd_.get(), data.data(), data.size(), row_.ref); !st.ok()) {
      broken_ = st;  // the file holds an unknown prefix of data: resuming re-reads it
      return st;
    }
    digester_->Update(data);
    offset_ += static_cast<int64_t>(data.size());
    active_->offset.store(offset_);
    active_->updated_ns.store(ToNanos(absl::Now()));
    return absl::OkStatus();
  }

  absl::Status Truncate(int64_t size) override {
    if (absl::Status st = CheckUsable(); !st.ok()) {
      return st;
    }
    if (size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ingest ", row_.ref, ": truncate to ", size, " is not supported (only 0)"));
    }
    if (::ftruncate(fd_.get(), 0) != 0) {
      return ErrnoError(errno, absl::StrCat("truncate ingest ", row_.ref));
    }
    absl::StatusOr<std::unique_ptr<Digester>> fresh = Digester::Create(digester_->algorithm());
    if (!fresh.ok()) {
      return fresh.status();
    }
    digester_ = std::move(*fresh);
    offset_ = 0;
    active_->offset.store(0);
    active_->updated_ns.store(ToNanos(absl::Now()));
    return absl::OkStatus();
  }

  absl::Status Commit(int64_t size, const Digest& expected, const content::Labels& labels) override {
    if (released_) {
      return absl::FailedPreconditionError(absl::StrCat("ingest ", row_.ref, ": writer is closed"));
    }
    absl::Status st = DoCommit(size, expected, labels);
    Release();
    return st;
  }

  absl::Status Close() override {
    if (released_) {
      return absl::OkStatus();
    }
    Release();
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

  absl::Status DoCommit(int64_t size, Digest expected, const content::Labels& labels) {
    if (absl::Status st = CheckUsable(); !st.ok()) {
      return st;
    }
    if (absl::Status st = ValidateLabels(labels); !st.ok()) {
      return st;
    }
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
    Digest actual = digester_->Sum();
    if (!expected.IsEmpty() && expected.algorithm() != actual.algorithm()) {
      absl::StatusOr<std::unique_ptr<Digester>> other = Digester::Create(expected.algorithm());
      if (!other.ok()) {
        return other.status();
      }
      int64_t hashed = offset_;
      if (absl::Status st = HashFile(fd_.get(), other->get(), &hashed, row_.ref); !st.ok()) {
        return st;
      }
      actual = (*other)->Sum();
    }
    if (!expected.IsEmpty() && actual != expected) {
      return absl::FailedPreconditionError(absl::StrCat(
          "unexpected commit digest ", actual.ToString(), ", expected ", expected.ToString()));
    }
    if (::fdatasync(fd_.get()) != 0) {
      return ErrnoError(errno, absl::StrCat("fsync ingest ", row_.ref));
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

}  // namespace

// --- FileStore: construction and recovery ----------------------------------------------------

FileStore::FileStore(StoreOptions options, std::unique_ptr<sqlite::Db> db, int lock_fd)
    : options_(std::move(options)), lock_fd_(lock_fd), db_(std::move(db)) {}

FileStore::~FileStore() {
  stop_.Notify();
  if (expiry_thread_.joinable()) {
    expiry_thread_.join();
  }
  {
    absl::MutexLock lock(&mu_);
    db_.reset();
  }
  ::close(lock_fd_);
}

std::string FileStore::BlobPath(const Digest& digest) const {
  return absl::StrCat(options_.root, "/blobs/", digest.algorithm(), "/", digest.hex());
}

std::string FileStore::IngestDir(const std::string& id) const {
  return absl::StrCat(options_.root, "/ingest/", id);
}

std::string FileStore::IngestDataPath(const std::string& id) const {
  return absl::StrCat(options_.root, "/ingest/", id, "/data");
}

absl::Status FileStore::Recover() {
  absl::MutexLock lock(&mu_);
  std::error_code ec;
  // 1. Ingest rows whose data is gone (a crash while creating or committing one) are dropped.
  std::set<std::string> ingest_ids;
  {
    std::vector<IngestRow> rows;
    absl::StatusOr<sqlite::Statement> st =
        db_->Prepare(absl::StrCat("SELECT ", kIngestColumns, " FROM ingests"));
    if (!st.ok()) {
      return st.status();
    }
    absl::Status scan = st->ForEachRow([&]() -> absl::Status {
      absl::StatusOr<IngestRow> row = IngestFromRow(*st);
      if (!row.ok()) {
        return row.status();
      }
      rows.push_back(std::move(*row));
      return absl::OkStatus();
    });
    if (!scan.ok()) {
      return scan;
    }
    for (const IngestRow& row : rows) {
      if (fs::is_regular_file(IngestDataPath(row.id), ec)) {
        ingest_ids.insert(row.id);
        continue;
      }
      BERTH_LOG(Warn) << "contentd: dropping ingest " << row.ns << "/" << row.ref
                      << ": its data is missing";
      if (absl::Status s = RemoveIngestLocked(row); !s.ok()) {
        return s;
      }
    }
  }
  // 2. Ingest directories no row owns (a crash while opening a writer) are removed.
  for (const auto& entry : fs::directory_iterator(options_.root + "/ingest", ec)) {
    std::string name = entry.path().filename().string();
    if (ingest_ids.count(name) == 0) {
      BERTH_LOG(Info) << "contentd: removing orphaned ingest directory " << name;
      fs::remove_all(entry.path(), ec);
    }
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("scan ", options_.root, "/ingest: ", ec.message()));
  }
  // 3. Blob files no row names (a crash between the rename and the metadata commit) and
  //    anything that is not a blob are removed; rows whose file is gone are dropped.
  std::set<std::string> referenced;
  {
    absl::StatusOr<sqlite::Statement> st = db_->Prepare("SELECT DISTINCT digest FROM blobs");
    if (!st.ok()) {
      return st.status();
    }
    absl::Status scan = st->ForEachRow([&]() -> absl::Status {
      referenced.insert(st->Text(0));
      return absl::OkStatus();
    });
    if (!scan.ok()) {
      return scan;
    }
  }
  std::set<std::string> present;
  for (const auto& alg_dir : fs::directory_iterator(options_.root + "/blobs", ec)) {
    std::string alg = alg_dir.path().filename().string();
    if (!alg_dir.is_directory(ec)) {
      continue;
    }
    for (const auto& entry : fs::directory_iterator(alg_dir.path(), ec)) {
      std::string name = absl::StrCat(alg, ":", entry.path().filename().string());
      absl::StatusOr<Digest> digest = Digest::Parse(name);
      if (digest.ok() && referenced.count(name) != 0 && entry.is_regular_file(ec)) {
        present.insert(name);
        continue;
      }
      BERTH_LOG(Info) << "contentd: removing unreferenced blob file " << entry.path().string();
      fs::remove_all(entry.path(), ec);
    }
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("scan ", options_.root, "/blobs: ", ec.message()));
  }
  for (const std::string& digest : referenced) {
    if (present.count(digest) != 0) {
      continue;
    }
    BERTH_LOG(Error) << "contentd: blob " << digest
                     << " is in metadata.db but its file is missing; dropping it";
    absl::StatusOr<sqlite::Statement> st = db_->Prepare("DELETE FROM blobs WHERE digest = ?");
    if (!st.ok()) {
      return st.status();
    }
    if (absl::Status s = st->Bind(1, digest).Run(); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

void FileStore::StartExpiryThread() {
  if (options_.lease_expiry_interval > absl::ZeroDuration()) {
    expiry_thread_ = std::thread([this] { ExpiryLoop(); });
  }
}

// --- helpers ----------------------------------------------------------------------------------

absl::Status FileStore::RegisterNamespaceLocked(const std::string& ns) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) "
      "VALUES (?, x'', ?, ?)");
  if (!st.ok()) {
    return st.status();
  }
  int64_t now = ToNanos(absl::Now());
  return st->Bind(1, ns).Bind(2, now).Bind(3, now).Run();
}

absl::Status FileStore::CheckLeaseLocked(const Context& ctx) {
  if (ctx.lease.empty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("SELECT 1 FROM leases WHERE ns = ? AND id = ?");
  if (!st.ok()) {
    return st.status();
  }
  absl::StatusOr<bool> row = st->Bind(1, ctx.ns).Bind(2, ctx.lease).Step();
  if (!row.ok()) {
    return row.status();
  }
  if (!*row) {
    return absl::NotFoundError(absl::StrCat("lease ", ctx.lease, " not found"));
  }
  return absl::OkStatus();
}

absl::Status FileStore::AddLeaseResourceLocked(const std::string& ns, const std::string& lease,
                                               absl::string_view type, absl::string_view id) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "INSERT OR IGNORE INTO lease_resources (ns, lease, type, id) VALUES (?, ?, ?, ?)");
  if (!st.ok()) {
    return st.status();
  }
  return st->Bind(1, ns).Bind(2, lease).Bind(3, type).Bind(4, id).Run();
}

absl::StatusOr<bool> FileStore::BlobExistsLocked(const std::string& ns, const Digest& digest) {
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("SELECT 1 FROM blobs WHERE ns = ? AND digest = ?");
  if (!st.ok()) {
    return st.status();
  }
  return st->Bind(1, ns).Bind(2, digest.ToString()).Step();
}

absl::StatusOr<std::optional<content::Info>> FileStore::GetInfoLocked(const std::string& ns,
                                                                      const Digest& digest) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      absl::StrCat("SELECT ", kBlobColumns, " FROM blobs WHERE ns = ? AND digest = ?"));
  if (!st.ok()) {
    return st.status();
  }
  absl::StatusOr<bool> row = st->Bind(1, ns).Bind(2, digest.ToString()).Step();
  if (!row.ok()) {
    return row.status();
  }
  if (!*row) {
    return std::optional<content::Info>();
  }
  absl::StatusOr<content::Info> info = InfoFromRow(*st, 0);
  if (!info.ok()) {
    return info.status();
  }
  return std::optional<content::Info>(std::move(*info));
}

absl::StatusOr<std::optional<IngestRow>> FileStore::GetIngestLocked(const std::string& ns,
                                                                    const std::string& ref) {
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      absl::StrCat("SELECT ", kIngestColumns, " FROM ingests WHERE ns = ? AND ref = ?"));
  if (!st.ok()) {
    return st.status();
  }
  absl::StatusOr<bool> row = st->Bind(1, ns).Bind(2, ref).Step();
  if (!row.ok()) {
    return row.status();
  }
  if (!*row) {
    return std::optional<IngestRow>();
  }
  absl::StatusOr<IngestRow> ingest = IngestFromRow(*st);
  if (!ingest.ok()) {
    return ingest.status();
  }
  return std::optional<IngestRow>(std::move(*ingest));
}

content::IngestStatus FileStore::StatusOf(const IngestRow& row) {
  content::IngestStatus status;
  status.ref = row.ref;
  status.total = row.total;
  status.expected = row.expected;
  status.started_at = row.started_at;
  status.updated_at = row.started_at;
  auto it = active_.find(IngestKey(row.ns, row.ref));
  if (it != active_.end()) {
    status.offset = it->second->offset.load();
    int64_t updated = it->second->updated_ns.load();
    if (updated != 0) {
      status.updated_at = FromNanos(updated);
    }
    return status;
  }
  struct stat sb;
  if (::stat(IngestDataPath(row.id).c_str(), &sb) == 0) {
    status.offset = sb.st_size;
    status.updated_at = absl::TimeFromTimespec(sb.st_mtim);
  }
  return status;
}

absl::Status FileStore::DeleteIngestRowsLocked(const IngestRow& row) {
  absl::StatusOr<sqlite::Statement> del =
      db_->Prepare("DELETE FROM ingests WHERE ns = ? AND ref = ?");
  if (!del.ok()) {
    return del.status();
  }
  if (absl::Status s = del->Bind(1, row.ns).Bind(2, row.ref).Run(); !s.ok()) {
    return s;
  }
  absl::StatusOr<sqlite::Statement> res =
      db_->Prepare("DELETE FROM lease_resources WHERE ns = ? AND type = 'ingests' AND id = ?");
  if (!res.ok()) {
    return res.status();
  }
  return res->Bind(1, row.ns).Bind(2, row.ref).Run();
}

absl::Status FileStore::RemoveIngestLocked(const IngestRow& row) {
  absl::Status st = db_->Transaction([&]() { return DeleteIngestRowsLocked(row); });
  if (!st.ok()) {
    return st;
  }
  std::error_code ec;
  fs::remove_all(IngestDir(row.id), ec);
  if (ec) {
    BERTH_LOG(Warn) << "contentd: removing ingest directory " << row.id << ": " << ec.message();
  }
  return absl::OkStatus();
}

void FileStore::RemoveUnreferencedFilesLocked(const std::vector<Removal>& removed) {
  std::set<std::string> done;
  for (const Removal& r : removed) {
    std::string digest = r.digest.ToString();
    if (!done.insert(digest).second) {
      continue;
    }
    absl::StatusOr<sqlite::Statement> st = db_->Prepare("SELECT 1 FROM blobs WHERE digest = ?");
    if (!st.ok()) {
      BERTH_LOG(Error) << "contentd: " << st.status();
      continue;
    }
    absl::StatusOr<bool> row = st->Bind(1, digest).Step();
    if (!row.ok()) {
      BERTH_LOG(Error) << "contentd: " << row.status();
      continue;
    }
    if (*row) {
      continue;  // another namespace still has it
    }
    if (::unlink(BlobPath(r.digest).c_str()) != 0 && errno != ENOENT) {
      // Open() removes it next time.
      BERTH_LOG(Warn) << "contentd: unlink " << BlobPath(r.digest) << ": " << strerror(errno);
    }
  }
}

void FileStore::Publish(const std::vector<Removal>& removed) {
  if (options_.publisher == nullptr) {
    return;
  }
  for (const Removal& r : removed) {
    containerd::events::ContentDelete event;
    event.set_digest(r.digest.ToString());
    if (absl::Status st = options_.publisher->Publish(r.ns, "/content/delete", event); !st.ok()) {
      BERTH_LOG(Error) << "contentd: publishing /content/delete for " << r.digest.ToString()
                       << " in " << r.ns << ": " << st;
    }
  }
}

// --- content::Provider -----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<content::Reader>> FileStore::OpenReader(const Context& ctx,
                                                                       const Digest& digest) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::optional<content::Info>> info = GetInfoLocked(ctx.ns, digest);
  if (!info.ok()) {
    return info.status();
  }
  if (!info->has_value()) {
    return NotFoundContent(digest);
  }
  std::string path = BlobPath(digest);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::DataLossError(absl::StrCat("content ", digest.ToString(), ": open ", path, ": ",
                                            strerror(errno)));
  }
  return std::unique_ptr<content::Reader>(
      new FileReader(std::move(fd), (*info)->size, digest));
}

// --- content::Ingester -----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<content::Writer>> FileStore::OpenWriter(
    const Context& ctx, const content::WriterOptions& opts) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateRef(opts.ref); !st.ok()) {
    return st;
  }
  if (opts.total < 0) {
    return absl::InvalidArgumentError(absl::StrCat("ingest ", opts.ref, ": negative total"));
  }
  const std::string key = IngestKey(ctx.ns, opts.ref);
  IngestRow row;
  UniqueFd fd;
  auto active = std::make_shared<ActiveIngest>();
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status st = CheckLeaseLocked(ctx); !st.ok()) {
      return st;
    }
    if (!opts.expected.IsEmpty()) {
      absl::StatusOr<bool> exists = BlobExistsLocked(ctx.ns, opts.expected);
      if (!exists.ok()) {
        return exists.status();
      }
      if (*exists) {
        // As containerd: the lease now holds the existing blob too.
        if (!ctx.lease.empty()) {
          if (absl::Status st =
                  AddLeaseResourceLocked(ctx.ns, ctx.lease, "content", opts.expected.ToString());
              !st.ok()) {
            return st;
          }
        }
        return absl::AlreadyExistsError(
            absl::StrCat("content ", opts.expected.ToString(), ": already exists"));
      }
    }
    if (active_.count(key) != 0) {
      return LockedError(opts.ref);
    }
    absl::StatusOr<std::optional<IngestRow>> existing = GetIngestLocked(ctx.ns, opts.ref);
    if (!existing.ok()) {
      return existing.status();
    }
    if (existing->has_value()) {
      row = **existing;
      bool changed = false;
      if (opts.total > 0 && opts.total != row.total) {
        row.total = opts.total;
        changed = true;
      }
      if (!opts.expected.IsEmpty() && opts.expected != row.expected) {
        row.expected = opts.expected;
        changed = true;
      }
      absl::Status st = db_->Transaction([&]() -> absl::Status {
        if (changed) {
          absl::StatusOr<sqlite::Statement> up = db_->Prepare(
              "UPDATE ingests SET total = ?, expected = ? WHERE ns = ? AND ref = ?");
          if (!up.ok()) {
            return up.status();
          }
          if (absl::Status s = up->Bind(1, row.total)
                                   .Bind(2, row.expected.ToString())
                                   .Bind(3, row.ns)
                                   .Bind(4, row.ref)
                                   .Run();
              !s.ok()) {
            return s;
          }
        }
        if (!ctx.lease.empty()) {
          return AddLeaseResourceLocked(ctx.ns, ctx.lease, "ingests", opts.ref);
        }
        return absl::OkStatus();
      });
      if (!st.ok()) {
        return st;
      }
      std::string path = IngestDataPath(row.id);
      fd.Reset(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
      if (!fd.valid()) {
        return ErrnoError(errno, absl::StrCat("open ", path));
      }
    } else {
      row.ns = ctx.ns;
      row.ref = opts.ref;
      row.id = Sha256Of(key).hex();
      row.total = opts.total;
      row.expected = opts.expected;
      row.started_at = absl::Now();
      // Files first: a crash before the row commits leaves a directory Open() removes.
      std::string dir = IngestDir(row.id);
      std::error_code ec;
      fs::remove_all(dir, ec);
      if (::mkdir(dir.c_str(), 0755) != 0) {
        return ErrnoError(errno, absl::StrCat("mkdir ", dir));
      }
      std::string path = IngestDataPath(row.id);
      fd.Reset(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd.valid()) {
        absl::Status st = ErrnoError(errno, absl::StrCat("open ", path));
        fs::remove_all(dir, ec);
        return st;
      }
      absl::Status st = db_->Transaction([&]() -> absl::Status {
        if (absl::Status s = RegisterNamespaceLocked(ctx.ns); !s.ok()) {
          return s;
        }
        absl::StatusOr<sqlite::Statement> ins = db_->Prepare(
            "INSERT INTO ingests (ns, ref, id, total, expected, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)");
        if (!ins.ok()) {
          return ins.status();
        }
        if (absl::Status s = ins->Bind(1, row.ns)
                                 .Bind(2, row.ref)
                                 .Bind(3, row.id)
                                 .Bind(4, row.total)
                                 .Bind(5, row.expected.ToString())
                                 .Bind(6, ToNanos(row.started_at))
                                 .Run();
            !s.ok()) {
          return s;
        }
        if (!ctx.lease.empty()) {
          return AddLeaseResourceLocked(ctx.ns, ctx.lease, "ingests", opts.ref);
        }
        return absl::OkStatus();
      });
      if (!st.ok()) {
        fd.Reset();
        fs::remove_all(dir, ec);
        return st;
      }
    }
    active_[key] = active;
  }
  // The file is the truth about what was written: re-hash it to resume the running digest.
  std::string alg = row.expected.IsEmpty() ? "sha256" : row.expected.algorithm();
  absl::StatusOr<std::unique_ptr<Digester>> digester = Digester::Create(alg);
  int64_t offset = -1;
  absl::Status st = digester.ok() ? HashFile(fd.get(), digester->get(), &offset, row.ref)
                                  : digester.status();
  if (!st.ok()) {
    ReleaseRef(key, active);
    return st;
  }
  if (offset > 0) {
    struct stat sb;
    if (::fstat(fd.get(), &sb) == 0) {
      active->updated_ns.store(ToNanos(absl::TimeFromTimespec(sb.st_mtim)));
    }
  }
  return std::unique_ptr<content::Writer>(new FileWriter(
      this, ctx, std::move(row), active, std::move(fd), std::move(*digester), offset));
}

void FileStore::ReleaseRef(const std::string& key, const std::shared_ptr<ActiveIngest>& active) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(key);
  if (it != active_.end() && it->second == active) {
    active_.erase(it);
  }
}

absl::Status FileStore::CommitIngest(const Context& ctx, const IngestRow& row,
                                     const std::shared_ptr<ActiveIngest>& active,
                                     const Digest& digest, int64_t size,
                                     const LabelMap& labels) {
  std::string data = IngestDataPath(row.id);
  absl::MutexLock lock(&mu_);
  if (active->aborted.load()) {
    return absl::NotFoundError(absl::StrCat("ingest ", row.ref, ": aborted"));
  }
  if (absl::Status st = CheckLeaseLocked(ctx); !st.ok()) {
    return st;
  }
  absl::StatusOr<bool> exists = BlobExistsLocked(ctx.ns, digest);
  if (!exists.ok()) {
    return exists.status();
  }
  if (*exists) {
    if (absl::Status st = RemoveIngestLocked(row); !st.ok()) {
      return st;
    }
    if (!ctx.lease.empty()) {
      AddLeaseResourceLocked(ctx.ns, ctx.lease, "content", digest.ToString()).IgnoreError();
    }
    return absl::AlreadyExistsError(
        absl::StrCat("content ", digest.ToString(), ": already exists"));
  }
  // Move the bytes into place unless another namespace already has the same blob on disk.
  std::string path = BlobPath(digest);
  bool renamed = false;
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) {
    std::string blobs = options_.root + "/blobs";
    std::string alg_dir = absl::StrCat(blobs, "/", digest.algorithm());
    if (absl::Status st = EnsureDir(alg_dir, blobs); !st.ok()) {
      return st;
    }
    if (::rename(data.c_str(), path.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("rename ", data, " to ", path));
    }
    renamed = true;
    if (absl::Status st = FsyncPath(alg_dir); !st.ok()) {
      ::rename(path.c_str(), data.c_str());
      return st;
    }
  }
  int64_t now = ToNanos(absl::Now());
  absl::Status st = db_->Transaction([&]() -> absl::Status {
    if (absl::Status s = RegisterNamespaceLocked(ctx.ns); !s.ok()) {
      return s;
    }
    absl::StatusOr<sqlite::Statement> ins = db_->Prepare(
        "INSERT INTO blobs (ns, digest, size, created_at, updated_at, labels) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    if (!ins.ok()) {
      return ins.status();
    }
    if (absl::Status s = ins->Bind(1, ctx.ns)
                             .Bind(2, digest.ToString())
                             .Bind(3, size)
                             .Bind(4, now)
                             .Bind(5, now)
                             .BindBlob(6, EncodeLabels(labels))
                             .Run();
        !s.ok()) {
      return s;
    }
    if (absl::Status s = DeleteIngestRowsLocked(row); !s.ok()) {
      return s;
    }
    if (!ctx.lease.empty()) {
      return AddLeaseResourceLocked(ctx.ns, ctx.lease, "content", digest.ToString());
    }
    return absl::OkStatus();
  });
  if (!st.ok()) {
    if (renamed) {
      ::rename(path.c_str(), data.c_str());  // the ingest stays whole and resumable
    }
    return st;
  }
  std::error_code ec;
  fs::remove_all(IngestDir(row.id), ec);
  return absl::OkStatus();
}

// --- content::Manager ------------------------------------------------------------------------

absl::StatusOr<content::Info> FileStore::GetInfo(const Context& ctx, const Digest& digest) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::optional<content::Info>> info = GetInfoLocked(ctx.ns, digest);
  if (!info.ok()) {
    return info.status();
  }
  if (!info->has_value()) {
    return NotFoundContent(digest);
  }
  return **info;
}

absl::StatusOr<content::Info> FileStore::Update(const Context& ctx, const content::Info& info,
                                                const std::vector<std::string>& fieldpaths) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::optional<content::Info>> current = GetInfoLocked(ctx.ns, info.digest);
  if (!current.ok()) {
    return current.status();
  }
  if (!current->has_value()) {
    return NotFoundContent(info.digest);
  }
  content::Info updated = **current;
  if (absl::Status st = ApplyLabelUpdate(&updated.labels, info.labels, fieldpaths,
                                         absl::StrCat("content ", info.digest.ToString()));
      !st.ok()) {
    return st;
  }
  updated.updated_at = absl::Now();
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("UPDATE blobs SET labels = ?, updated_at = ? WHERE ns = ? AND digest = ?");
  if (!st.ok()) {
    return st.status();
  }
  if (absl::Status s = st->BindBlob(1, EncodeLabels(updated.labels))
                           .Bind(2, ToNanos(updated.updated_at))
                           .Bind(3, ctx.ns)
                           .Bind(4, info.digest.ToString())
                           .Run();
      !s.ok()) {
    return s;
  }
  return updated;
}

absl::Status FileStore::Walk(const Context& ctx, const std::vector<std::string>& filters,
                             const std::function<absl::Status(const content::Info&)>& fn) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
  if (!filter.ok()) {
    return filter.status();
  }
  // Collect first: fn may call back into the store.
  std::vector<content::Info> matched;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<sqlite::Statement> st = db_->Prepare(
        absl::StrCat("SELECT ", kBlobColumns, " FROM blobs WHERE ns = ? ORDER BY digest"));
    if (!st.ok()) {
      return st.status();
    }
    st->Bind(1, ctx.ns);
    absl::Status scan = st->ForEachRow([&]() -> absl::Status {
      absl::StatusOr<content::Info> info = InfoFromRow(*st, 0);
      if (!info.ok()) {
        return info.status();
      }
      if (filter->Match(content::BlobFilterAdaptor(*info))) {
        matched.push_back(std::move(*info));
      }
      return absl::OkStatus();
    });
    if (!scan.ok()) {
      return scan;
    }
  }
  for (const content::Info& info : matched) {
    if (absl::Status st = fn(info); !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status FileStore::Delete(const Context& ctx, const Digest& digest) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  std::vector<Removal> removed;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<sqlite::Statement> st =
        db_->Prepare("DELETE FROM blobs WHERE ns = ? AND digest = ?");
    if (!st.ok()) {
      return st.status();
    }
    if (absl::Status s = st->Bind(1, ctx.ns).Bind(2, digest.ToString()).Run(); !s.ok()) {
      return s;
    }
    if (db_->Changes() == 0) {
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
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::optional<IngestRow>> row = GetIngestLocked(ctx.ns, ref);
  if (!row.ok()) {
    return row.status();
  }
  if (!row->has_value()) {
    return NotFoundIngest(ref);
  }
  return StatusOf(**row);
}

absl::StatusOr<std::vector<content::IngestStatus>> FileStore::ListStatuses(
    const Context& ctx, const std::vector<std::string>& filters) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
  if (!filter.ok()) {
    return filter.status();
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      absl::StrCat("SELECT ", kIngestColumns, " FROM ingests WHERE ns = ? ORDER BY ref"));
  if (!st.ok()) {
    return st.status();
  }
  st->Bind(1, ctx.ns);
  std::vector<content::IngestStatus> out;
  absl::Status scan = st->ForEachRow([&]() -> absl::Status {
    absl::StatusOr<IngestRow> row = IngestFromRow(*st);
    if (!row.ok()) {
      return row.status();
    }
    content::IngestStatus status = StatusOf(*row);
    if (filter->Match(content::IngestFilterAdaptor(status))) {
      out.push_back(std::move(status));
    }
    return absl::OkStatus();
  });
  if (!scan.ok()) {
    return scan;
  }
  return out;
}

absl::Status FileStore::Abort(const Context& ctx, const std::string& ref) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::optional<IngestRow>> row = GetIngestLocked(ctx.ns, ref);
  if (!row.ok()) {
    return row.status();
  }
  if (!row->has_value()) {
    return NotFoundIngest(ref);
  }
  // As containerd, an abort wins over an open writer: the writer's next call fails.
  auto it = active_.find(IngestKey(ctx.ns, ref));
  if (it != active_.end()) {
    it->second->aborted.store(true);
    active_.erase(it);
  }
  return RemoveIngestLocked(**row);
}

// --- namespaces::NamespaceStore --------------------------------------------------------------

absl::Status FileStore::Create(const std::string& name, const namespaces::Labels& labels) {
  if (absl::Status st = ValidateNamespace(name); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateLabels(labels); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) "
      "VALUES (?, ?, ?, ?)");
  if (!st.ok()) {
    return st.status();
  }
  int64_t now = ToNanos(absl::Now());
  if (absl::Status s =
          st->Bind(1, name).BindBlob(2, EncodeLabels(labels)).Bind(3, now).Bind(4, now).Run();
      !s.ok()) {
    return s;
  }
  if (db_->Changes() == 0) {
    return absl::AlreadyExistsError(absl::StrCat("namespace ", name, ": already exists"));
  }
  return absl::OkStatus();
}

absl::StatusOr<namespaces::Namespace> FileStore::Get(const std::string& name) {
  if (absl::Status st = ValidateNamespace(name); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("SELECT labels FROM namespaces WHERE name = ?");
  if (!st.ok()) {
    return st.status();
  }
  absl::StatusOr<bool> row = st->Bind(1, name).Step();
  if (!row.ok()) {
    return row.status();
  }
  if (!*row) {
    return absl::NotFoundError(absl::StrCat("namespace ", name, ": not found"));
  }
  absl::StatusOr<LabelMap> labels = DecodeLabels(st->Text(0));
  if (!labels.ok()) {
    return labels.status();
  }
  return namespaces::Namespace{name, std::move(*labels)};
}

absl::StatusOr<std::vector<namespaces::Namespace>> FileStore::List() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> st =
      db_->Prepare("SELECT name, labels FROM namespaces ORDER BY name");
  if (!st.ok()) {
    return st.status();
  }
  std::vector<namespaces::Namespace> out;
  absl::Status scan = st->ForEachRow([&]() -> absl::Status {
    absl::StatusOr<LabelMap> labels = DecodeLabels(st->Text(1));
    if (!labels.ok()) {
      return labels.status();
    }
    out.push_back(namespaces::Namespace{st->Text(0), std::move(*labels)});
    return absl::OkStatus();
  });
  if (!scan.ok()) {
    return scan;
  }
  return out;
}

absl::StatusOr<namespaces::Namespace> FileStore::Update(
    const namespaces::Namespace& ns, const std::vector<std::string>& fieldpaths) {
  if (absl::Status st = ValidateNamespace(ns.name); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> get =
      db_->Prepare("SELECT labels FROM namespaces WHERE name = ?");
  if (!get.ok()) {
    return get.status();
  }
  absl::StatusOr<bool> row = get->Bind(1, ns.name).Step();
  if (!row.ok()) {
    return row.status();
  }
  if (!*row) {
    return absl::NotFoundError(absl::StrCat("namespace ", ns.name, ": not found"));
  }
  absl::StatusOr<LabelMap> labels = DecodeLabels(get->Text(0));
  if (!labels.ok()) {
    return labels.status();
  }
  if (absl::Status st =
          ApplyLabelUpdate(&*labels, ns.labels, fieldpaths, absl::StrCat("namespace ", ns.name));
      !st.ok()) {
    return st;
  }
  absl::StatusOr<sqlite::Statement> put =
      db_->Prepare("UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?");
  if (!put.ok()) {
    return put.status();
  }
  if (absl::Status s = put->BindBlob(1, EncodeLabels(*labels))
                           .Bind(2, ToNanos(absl::Now()))
                           .Bind(3, ns.name)
                           .Run();
      !s.ok()) {
    return s;
  }
  return namespaces::Namespace{ns.name, std::move(*labels)};
}

absl::Status FileStore::Delete(const std::string& name) {
  if (absl::Status st = ValidateNamespace(name); !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&mu_);
  return db_->Transaction([&]() -> absl::Status {
    for (absl::string_view table : {"blobs", "ingests", "leases"}) {
      absl::StatusOr<sqlite::Statement> st =
          db_->Prepare(absl::StrCat("SELECT 1 FROM ", table, " WHERE ns = ? LIMIT 1"));
      if (!st.ok()) {
        return st.status();
      }
      absl::StatusOr<bool> row = st->Bind(1, name).Step();
      if (!row.ok()) {
        return row.status();
      }
      if (*row) {
        return absl::FailedPreconditionError(
            absl::StrCat("namespace ", name, " must be empty, but it still has ", table));
      }
    }
    absl::StatusOr<sqlite::Statement> del = db_->Prepare("DELETE FROM namespaces WHERE name = ?");
    if (!del.ok()) {
      return del.status();
    }
    if (absl::Status s = del->Bind(1, name).Run(); !s.ok()) {
      return s;
    }
    if (db_->Changes() == 0) {
      return absl::NotFoundError(absl::StrCat("namespace ", name, ": not found"));
    }
    return absl::OkStatus();
  });
}

// --- LocalContentStore -----------------------------------------------------------------------

StoreStats FileStore::Stats() {
  StoreStats stats;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<sqlite::Statement> st = db_->Prepare(
      "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM "
      "(SELECT digest, MAX(size) AS size FROM blobs GROUP BY digest)");
  if (st.ok()) {
    absl::StatusOr<bool> row = st->Step();
    if (row.ok() && *row) {
      stats.blobs = st->Int(0);
      stats.bytes = st->Int(1);
    }
  }
  absl::StatusOr<sqlite::Statement> in = db_->Prepare("SELECT COUNT(*) FROM ingests");
  if (in.ok()) {
    absl::StatusOr<bool> row = in->Step();
    if (row.ok() && *row) {
      stats.ingests = in->Int(0);
    }
  }
  return stats;
}

}  // namespace internal

LocalContentStore::~LocalContentStore() = default;

absl::StatusOr<std::unique_ptr<LocalContentStore>> LocalContentStore::Open(
    const StoreOptions& options) {
  namespace fs = std::filesystem;
  if (options.root.empty()) {
    return absl::InvalidArgumentError("content store root must not be empty");
  }
  std::error_code ec;
  fs::create_directories(options.root, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("create ", options.root, ": ", ec.message()));
  }
  for (const char* sub : {"/blobs", "/ingest"}) {
    if (absl::Status st = internal::EnsureDir(options.root + sub, options.root); !st.ok()) {
      return st;
    }
  }
  std::string lock_path = options.root + "/lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return internal::ErrnoError(errno, absl::StrCat("open ", lock_path));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("content store ", options.root, " is in use by another store"));
    }
    return internal::ErrnoError(err, absl::StrCat("lock ", lock_path));
  }
  absl::StatusOr<std::unique_ptr<sqlite::Db>> db =
      sqlite::Db::Open(options.root + "/metadata.db", internal::Migrations());
  if (!db.ok()) {
    ::close(lock_fd);
    return db.status();
  }
  auto store = std::make_unique<internal::FileStore>(options, std::move(*db), lock_fd);
  if (absl::Status st = store->Recover(); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("recovering ", options.root, ": ", st.message()));
  }
  store->StartExpiryThread();
  return std::unique_ptr<LocalContentStore>(std::move(store));
}

}  // namespace berth::contentd
