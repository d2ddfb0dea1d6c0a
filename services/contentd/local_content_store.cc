// LocalContentStore::Open, crash recovery, and the helpers the other local_*.cc files share
// (see local_file_store.h for how the store is split).

#include "services/contentd/local_content_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "containerd/events/content.pb.h"
#include "lib/base/logging.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd {

namespace internal {

absl::Status EnsureDir(const std::string& path, const std::string& parent) {
  if (::mkdir(path.c_str(), 0755) == 0) {
    return FsyncDir(parent);
  }
  if (errno == EEXIST) {
    return absl::OkStatus();
  }
  return ErrnoStatus(errno, absl::StrCat("mkdir ", path));
}

namespace {

namespace fs = std::filesystem;

// An exclusive flock on <root>/lock: FailedPrecondition while another store holds it.
absl::StatusOr<UniqueFd> LockRoot(const std::string& root) {
  std::string path = root + "/lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", path));
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("content store ", root, " is in use by another store"));
    }
    return ErrnoStatus(errno, absl::StrCat("lock ", path));
  }
  return fd;
}

}  // namespace

// --- construction and recovery ----------------------------------------------------------------

FileStore::FileStore(StoreOptions options, std::unique_ptr<ContentMetadata> meta, UniqueFd lock_fd)
    : options_(std::move(options)),
      lock_fd_(std::move(lock_fd)),
      meta_(std::move(meta)),
      db_(meta_->db()) {}

FileStore::~FileStore() {
  stop_.Notify();
  if (expiry_thread_.joinable()) {
    expiry_thread_.join();
  }
  absl::MutexLock lock(&mu_);
  db_ = nullptr;
  meta_.reset();
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
  BERTH_ASSIGN_OR_RETURN(std::vector<IngestRow> rows, meta_->ListIngests(std::nullopt));
  for (const IngestRow& row : rows) {
    if (fs::is_regular_file(IngestDataPath(row.id), ec)) {
      ingest_ids.insert(row.id);
      continue;
    }
    BERTH_LOG(Warn) << "contentd: dropping ingest " << row.ns << "/" << row.ref
                    << ": its data is missing";
    BERTH_RETURN_IF_ERROR(RemoveIngestLocked(row));
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
  BERTH_ASSIGN_OR_RETURN(std::set<std::string> referenced, meta_->ReferencedDigests());
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
    if (present.count(digest) == 0) {
      BERTH_LOG(Error) << "contentd: blob " << digest
                       << " is in metadata.db but its file is missing; dropping it";
      BERTH_RETURN_IF_ERROR(meta_->ForgetDigest(digest));
    }
  }
  // 4. What is left is what Stats() reports from now on.
  return meta_->LoadTotals();
}

void FileStore::StartExpiryThread() {
  if (options_.lease_expiry_interval > absl::ZeroDuration()) {
    expiry_thread_ = std::thread([this] { ExpiryLoop(); });
  }
}

// --- helpers ----------------------------------------------------------------------------------

absl::Status FileStore::CheckLeaseLocked(const std::string& ns, const std::string& lease) {
  if (lease.empty()) {
    return absl::OkStatus();
  }
  BERTH_ASSIGN_OR_RETURN(bool exists, meta_->LeaseExists(ns, lease));
  if (!exists) {
    return absl::NotFoundError(absl::StrCat("lease ", lease, " not found"));
  }
  return absl::OkStatus();
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

absl::Status FileStore::RemoveIngestLocked(const IngestRow& row) {
  BERTH_RETURN_IF_ERROR(meta_->Transaction([&]() { return meta_->DeleteIngest(row.ns, row.ref); }));
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
    absl::StatusOr<bool> referenced = meta_->DigestReferenced(digest);
    if (!referenced.ok()) {
      BERTH_LOG(Error) << "contentd: " << referenced.status();
      continue;
    }
    if (*referenced) {
      continue;  // another namespace still has it
    }
    if (::unlink(BlobPath(r.digest).c_str()) != 0 && errno != ENOENT) {
      // Open() removes it next time.
      BERTH_LOG(Warn) << "contentd: " << ErrnoStatus(errno, "unlink " + BlobPath(r.digest));
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

StoreStats FileStore::Stats() {
  absl::MutexLock lock(&mu_);
  const StoredTotals& totals = meta_->totals();
  return StoreStats{totals.blobs, totals.bytes, totals.ingests};
}

}  // namespace internal

LocalContentStore::~LocalContentStore() = default;

absl::StatusOr<std::unique_ptr<LocalContentStore>> LocalContentStore::Open(
    const StoreOptions& options) {
  if (options.root.empty()) {
    return absl::InvalidArgumentError("content store root must not be empty");
  }
  BERTH_RETURN_IF_ERROR(MakeDirs(options.root, 0755));
  for (const char* sub : {"/blobs", "/ingest"}) {
    BERTH_RETURN_IF_ERROR(internal::EnsureDir(options.root + sub, options.root));
  }
  BERTH_ASSIGN_OR_RETURN(UniqueFd lock_fd, internal::LockRoot(options.root));
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<internal::ContentMetadata> meta,
                         internal::ContentMetadata::Open(options.root + "/metadata.db"));
  auto store = std::make_unique<internal::FileStore>(options, std::move(meta), std::move(lock_fd));
  if (absl::Status st = store->Recover(); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("recovering ", options.root, ": ", st.message()));
  }
  store->StartExpiryThread();
  return std::unique_ptr<LocalContentStore>(std::move(store));
}

}  // namespace berth::contentd
