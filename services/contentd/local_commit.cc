// LocalContentStore's commit: a verified, fsynced ingest made a blob. Concurrent commits are
// group-committed (lib/base/group_commit.h): the commit at the front of the queue takes every
// commit queued behind it, renames each ingest's data into
// blobs/, fsyncs blobs/<alg> once and inserts every row in one transaction (one fsync of the
// WAL), so commits that arrive while one runs share its two fsyncs. The order for each blob is
// the single commit's: data fsynced (by the writer), renamed, directory fsynced, then the row.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "services/contentd/local_file_store.h"

namespace berth::contentd::internal {
namespace {

namespace fs = std::filesystem;

// For the crash test only (integration/contentd_crash_test.cc): contentd dies at `point` when
// BERTH_CONTENTD_CRASH_POINT names it.
void MaybeCrash(absl::string_view point) {
  if (const char* want = ::getenv("BERTH_CONTENTD_CRASH_POINT");
      want != nullptr && absl::string_view(want) == point) {
    ::_exit(137);
  }
}

}  // namespace

struct FileStore::PendingCommit {
  const Context& ctx;
  const IngestRow& row;
  const std::shared_ptr<ActiveIngest>& active;
  const Digest& digest;
  int64_t size;
  const LabelMap& labels;
  // Set by the group's leader under mu_:
  bool renamed = false;    // its data is at BlobPath(digest) now
  bool duplicate = false;  // ctx.ns had the blob: the ingest is dropped, nothing to insert
  absl::Status status;
};

absl::Status FileStore::CommitIngest(const Context& ctx, const IngestRow& row,
                                     const std::shared_ptr<ActiveIngest>& active,
                                     const Digest& digest, int64_t size, const LabelMap& labels) {
  PendingCommit me{ctx, row, active, digest, size, labels, false, false, absl::OkStatus()};
  commits_.Run(&me, [this](const std::vector<PendingCommit*>& group) { CommitGroup(group); });
  return me.status;
}

void FileStore::CommitGroup(const std::vector<PendingCommit*>& group) {
  absl::MutexLock lock(&mu_);
  std::vector<PendingCommit*> inserting;
  std::vector<PendingCommit*> later;  // a digest this group inserts already, in the same ns
  std::set<std::pair<std::string, std::string>> seen;
  for (PendingCommit* p : group) {
    if (p->active->aborted.load()) {
      p->status = absl::NotFoundError(absl::StrCat("ingest ", p->row.ref, ": aborted"));
      continue;
    }
    if (!seen.insert({p->ctx.ns, p->digest.ToString()}).second) {
      later.push_back(p);
      continue;
    }
    p->status = PrepareCommitLocked(*p);
    if (p->status.ok()) {
      inserting.push_back(p);
    }
  }
  InsertGroupLocked(inserting);
  for (PendingCommit* p : later) {
    // Its twin is committed now (or failed): PrepareCommitLocked sees which.
    p->status = PrepareCommitLocked(*p);
    if (p->status.ok()) {
      InsertGroupLocked({p});
    }
  }
}

absl::Status FileStore::PrepareCommitLocked(PendingCommit& p) {
  BERTH_RETURN_IF_ERROR(CheckLeaseLocked(p.ctx.ns, p.ctx.lease));
  BERTH_ASSIGN_OR_RETURN(bool exists, meta_->BlobExists(p.ctx.ns, p.digest));
  if (exists) {
    p.duplicate = true;
    return DropDuplicateIngestLocked(p.ctx, p.row, p.digest);  // AlreadyExists
  }
  BERTH_ASSIGN_OR_RETURN(p.renamed, MoveIntoBlobsLocked(p.row, p.digest));
  return absl::OkStatus();
}

void FileStore::InsertGroupLocked(const std::vector<PendingCommit*>& group) {
  if (group.empty()) {
    return;
  }
  // One fsync of each directory something was renamed into makes the renames durable before
  // any row names them.
  std::set<std::string> dirs;
  for (PendingCommit* p : group) {
    if (p->renamed) {
      dirs.insert(absl::StrCat(options_.root, "/blobs/", p->digest.algorithm()));
    }
  }
  absl::Status st;
  for (const std::string& dir : dirs) {
    if (st.ok()) {
      st = FsyncDir(dir);
    }
  }
  if (st.ok()) {
    MaybeCrash("commit-renamed");
    st = meta_->Transaction([&]() -> absl::Status {
      for (PendingCommit* p : group) {
        BERTH_RETURN_IF_ERROR(meta_->RegisterNamespace(p->ctx.ns));
        BERTH_RETURN_IF_ERROR(meta_->InsertBlob(p->ctx.ns, p->digest, p->size, p->labels));
        BERTH_RETURN_IF_ERROR(meta_->DeleteIngest(p->row.ns, p->row.ref));
        BERTH_RETURN_IF_ERROR(HoldForCallerLocked(p->ctx, p->digest));
      }
      return absl::OkStatus();
    });
  }
  for (PendingCommit* p : group) {
    p->status = st;
    std::error_code ec;
    if (st.ok()) {
      fs::remove_all(IngestDir(p->row.id), ec);
    } else if (p->renamed) {
      // The ingest stays whole and resumable.
      ::rename(BlobPath(p->digest).c_str(), IngestDataPath(p->row.id).c_str());
    }
  }
}

absl::Status FileStore::DropDuplicateIngestLocked(const Context& ctx, const IngestRow& row,
                                                  const Digest& digest) {
  // The lease must hold the blob it was writing: failing to record that fails the commit
  // (and keeps the ingest), as failing to record the ingest fails OpenWriter.
  BERTH_RETURN_IF_ERROR(meta_->Transaction([&]() -> absl::Status {
    BERTH_RETURN_IF_ERROR(meta_->DeleteIngest(row.ns, row.ref));
    return HoldForCallerLocked(ctx, digest);
  }));
  std::error_code ec;
  fs::remove_all(IngestDir(row.id), ec);
  return absl::AlreadyExistsError(absl::StrCat("content ", digest.ToString(), ": already exists"));
}

absl::Status FileStore::HoldForCallerLocked(const Context& ctx, const Digest& digest) {
  if (!ctx.lease.empty()) {
    BERTH_RETURN_IF_ERROR(meta_->AddLeaseResource(ctx.ns, ctx.lease, "content", digest.ToString()));
  }
  if (ctx.proxy_consumer) {
    BERTH_RETURN_IF_ERROR(meta_->ClaimForProxy(ctx.ns, digest));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> FileStore::MoveIntoBlobsLocked(const IngestRow& row, const Digest& digest) {
  std::string path = BlobPath(digest);
  struct stat sb;
  if (::stat(path.c_str(), &sb) == 0) {
    return false;  // another namespace has the same blob on disk (renamed and fsynced)
  }
  std::string data = IngestDataPath(row.id);
  std::string blobs = options_.root + "/blobs";
  std::string alg_dir = absl::StrCat(blobs, "/", digest.algorithm());
  BERTH_RETURN_IF_ERROR(EnsureDir(alg_dir, blobs));
  if (::rename(data.c_str(), path.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("rename ", data, " to ", path));
  }
  return true;
}

}  // namespace berth::contentd::internal
