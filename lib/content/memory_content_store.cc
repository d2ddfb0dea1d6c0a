#include "lib/content/memory_content_store.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "lib/base/identifiers.h"
#include "lib/base/labels.h"

namespace berth::content {
namespace {

absl::Status NotFoundContent(const Digest& digest) {
  return absl::NotFoundError(absl::StrCat("content ", digest.ToString(), ": not found"));
}

absl::Status NotFoundIngest(const std::string& ref) {
  return absl::NotFoundError(absl::StrCat("ingest ", ref, ": not found"));
}

// A committed blob in one namespace. The bytes are shared by every namespace that has them.
struct Blob {
  std::shared_ptr<const std::string> data;
  Info info;
};

// An ingest in progress. `locked` while a Writer holds it.
struct Ingest {
  IngestStatus status;
  std::string data;
  std::unique_ptr<Digester> digester = Digester::Sha256();
  bool locked = false;
};

class MemoryReader : public Reader {
 public:
  explicit MemoryReader(std::shared_ptr<const std::string> data) : data_(std::move(data)) {}
  int64_t Size() const override { return static_cast<int64_t>(data_->size()); }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) override {
    if (offset < 0 || offset > Size()) {
      return absl::OutOfRangeError(
          absl::StrCat("read at ", offset, " past the blob's length ", Size()));
    }
    size_t n = std::min(size, data_->size() - static_cast<size_t>(offset));
    std::memcpy(buf, data_->data() + offset, n);
    return n;
  }

 private:
  std::shared_ptr<const std::string> data_;
};

class MemoryContentStore : public ContentStore {
 public:
  absl::StatusOr<std::unique_ptr<Reader>> OpenReader(const Context& ctx,
                                                     const Digest& digest) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Blob*> blob = FindBlobLocked(ctx, digest);
    if (!blob.ok()) {
      return blob.status();
    }
    return std::unique_ptr<Reader>(new MemoryReader((*blob)->data));
  }

  absl::StatusOr<Info> GetInfo(const Context& ctx, const Digest& digest) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Blob*> blob = FindBlobLocked(ctx, digest);
    if (!blob.ok()) {
      return blob.status();
    }
    return (*blob)->info;
  }

  absl::StatusOr<Info> Update(const Context& ctx, const Info& info,
                              const std::vector<std::string>& fieldpaths) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Blob*> blob = FindBlobLocked(ctx, info.digest);
    if (!blob.ok()) {
      return blob.status();
    }
    Info updated = (*blob)->info;
    if (absl::Status st = ApplyLabelUpdate(&updated.labels, info.labels, fieldpaths,
                                           absl::StrCat("content ", info.digest.ToString()));
        !st.ok()) {
      return st;
    }
    updated.updated_at = std::max(absl::Now(), updated.created_at);
    (*blob)->info = updated;
    return updated;
  }

  absl::Status Walk(const Context& ctx, const std::vector<std::string>& filters,
                    const std::function<absl::Status(const Info&)>& fn) override {
    if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
      return st;
    }
    absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
    if (!filter.ok()) {
      return filter.status();
    }
    // Collect first: fn may call back into the store.
    std::vector<Info> matched;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [digest, blob] : blobs_[ctx.ns]) {
        if (filter->Match(BlobFilterAdaptor(blob.info))) {
          matched.push_back(blob.info);
        }
      }
    }
    for (const Info& info : matched) {
      if (absl::Status st = fn(info); !st.ok()) {
        return st;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Delete(const Context& ctx, const Digest& digest) override {
    absl::MutexLock lock(&mu_);
    if (absl::StatusOr<Blob*> blob = FindBlobLocked(ctx, digest); !blob.ok()) {
      return blob.status();
    }
    blobs_[ctx.ns].erase(digest.ToString());
    return absl::OkStatus();
  }

  absl::StatusOr<IngestStatus> GetStatus(const Context& ctx, const std::string& ref) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Ingest*> ingest = FindIngestLocked(ctx, ref);
    if (!ingest.ok()) {
      return ingest.status();
    }
    return (*ingest)->status;
  }

  absl::StatusOr<std::vector<IngestStatus>> ListStatuses(
      const Context& ctx, const std::vector<std::string>& filters) override {
    if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
      return st;
    }
    absl::StatusOr<filters::Filter> filter = filters::Filter::ParseAll(filters);
    if (!filter.ok()) {
      return filter.status();
    }
    absl::MutexLock lock(&mu_);
    std::vector<IngestStatus> out;
    for (const auto& [ref, ingest] : ingests_[ctx.ns]) {
      if (filter->Match(IngestFilterAdaptor(ingest->status))) {
        out.push_back(ingest->status);
      }
    }
    return out;
  }

  absl::Status Abort(const Context& ctx, const std::string& ref) override {
    absl::MutexLock lock(&mu_);
    if (absl::StatusOr<Ingest*> ingest = FindIngestLocked(ctx, ref); !ingest.ok()) {
      return ingest.status();
    }
    // A writer still holding it finds it gone (its calls fail with NotFound).
    ingests_[ctx.ns].erase(ref);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Writer>> OpenWriter(const Context& ctx,
                                                     const WriterOptions& opts) override;

 private:
  friend class MemoryWriter;

  absl::StatusOr<Blob*> FindBlobLocked(const Context& ctx, const Digest& digest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
      return st;
    }
    auto ns = blobs_.find(ctx.ns);
    if (ns == blobs_.end()) {
      return NotFoundContent(digest);
    }
    auto it = ns->second.find(digest.ToString());
    if (it == ns->second.end()) {
      return NotFoundContent(digest);
    }
    return &it->second;
  }

  absl::StatusOr<Ingest*> FindIngestLocked(const Context& ctx, const std::string& ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
      return st;
    }
    auto ns = ingests_.find(ctx.ns);
    if (ns == ingests_.end()) {
      return NotFoundIngest(ref);
    }
    auto it = ns->second.find(ref);
    if (it == ns->second.end()) {
      return NotFoundIngest(ref);
    }
    return it->second.get();
  }

  // The same bytes already committed in any namespace, to share them.
  std::shared_ptr<const std::string> SharedBytesLocked(const Digest& digest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [ns, blobs] : blobs_) {
      auto it = blobs.find(digest.ToString());
      if (it != blobs.end()) {
        return it->second.data;
      }
    }
    return nullptr;
  }

  absl::Mutex mu_;
  // namespace -> digest string -> blob
  std::map<std::string, std::map<std::string, Blob>> blobs_ ABSL_GUARDED_BY(mu_);
  // namespace -> ref -> ingest; shared_ptr so a writer can tell that Abort removed its ingest
  std::map<std::string, std::map<std::string, std::shared_ptr<Ingest>>> ingests_
      ABSL_GUARDED_BY(mu_);
};

// Holds one ingest's lock from OpenWriter to Commit, Close or destruction.
class MemoryWriter : public Writer {
 public:
  MemoryWriter(MemoryContentStore& store, Context ctx, std::shared_ptr<Ingest> ingest)
      : store_(store), ctx_(std::move(ctx)), ingest_(std::move(ingest)) {}
  ~MemoryWriter() override { Close().IgnoreError(); }

  absl::StatusOr<IngestStatus> Status() override {
    absl::MutexLock lock(&store_.mu_);
    if (absl::Status st = CheckLocked(); !st.ok()) {
      return st;
    }
    return ingest_->status;
  }

  Digest CurrentDigest() override {
    absl::MutexLock lock(&store_.mu_);
    return ingest_->digester->Sum();
  }

  absl::Status Write(absl::string_view data) override {
    absl::MutexLock lock(&store_.mu_);
    if (absl::Status st = CheckLocked(); !st.ok()) {
      return st;
    }
    ingest_->data.append(data.data(), data.size());
    ingest_->digester->Update(data);
    ingest_->status.offset = static_cast<int64_t>(ingest_->data.size());
    ingest_->status.updated_at = absl::Now();
    return absl::OkStatus();
  }

  absl::Status Truncate(int64_t size) override {
    if (size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("truncate to ", size, ": only 0 (start over) is supported"));
    }
    absl::MutexLock lock(&store_.mu_);
    if (absl::Status st = CheckLocked(); !st.ok()) {
      return st;
    }
    ingest_->data.clear();
    ingest_->digester = Digester::Sha256();
    ingest_->status.offset = 0;
    ingest_->status.updated_at = absl::Now();
    return absl::OkStatus();
  }

  absl::Status Commit(int64_t size, const Digest& expected, const Labels& labels) override {
    absl::MutexLock lock(&store_.mu_);
    absl::Status st = CommitLocked(size, expected, labels);
    ReleaseLocked();
    return st;
  }

  absl::Status Close() override {
    absl::MutexLock lock(&store_.mu_);
    ReleaseLocked();
    return absl::OkStatus();
  }

 private:
  // NotFound when the ingest was aborted or this writer let go of it.
  absl::Status CheckLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_.mu_) {
    if (released_) {
      return absl::FailedPreconditionError(
          absl::StrCat("ingest ", ingest_->status.ref, ": writer already closed"));
    }
    auto& refs = store_.ingests_[ctx_.ns];
    auto it = refs.find(ingest_->status.ref);
    if (it == refs.end() || it->second != ingest_) {
      return absl::NotFoundError(absl::StrCat("ingest ", ingest_->status.ref, ": aborted"));
    }
    return absl::OkStatus();
  }

  absl::Status CommitLocked(int64_t size, const Digest& expected, const Labels& labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_.mu_) {
    if (absl::Status st = CheckLocked(); !st.ok()) {
      return st;
    }
    if (absl::Status st = ValidateLabels(labels); !st.ok()) {
      return st;
    }
    const int64_t written = static_cast<int64_t>(ingest_->data.size());
    if (size > 0 && size != written) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ingest ", ingest_->status.ref, ": ", written, " bytes written, want ", size));
    }
    Digest actual = ingest_->digester->Sum();
    if (!expected.IsEmpty() && expected != actual) {
      return absl::FailedPreconditionError(
          absl::StrCat("ingest ", ingest_->status.ref, ": unexpected commit digest ",
                       actual.ToString(), ", expected ", expected.ToString()));
    }
    const std::string ref = ingest_->status.ref;
    auto& blobs = store_.blobs_[ctx_.ns];
    if (blobs.count(actual.ToString()) != 0) {
      store_.ingests_[ctx_.ns].erase(ref);
      return absl::AlreadyExistsError(
          absl::StrCat("content ", actual.ToString(), ": already exists"));
    }
    std::shared_ptr<const std::string> bytes = store_.SharedBytesLocked(actual);
    if (bytes == nullptr) {
      bytes = std::make_shared<const std::string>(std::move(ingest_->data));
    }
    Blob blob;
    blob.data = std::move(bytes);
    blob.info.digest = actual;
    blob.info.size = written;
    blob.info.created_at = absl::Now();
    blob.info.updated_at = blob.info.created_at;
    blob.info.labels = labels;
    blobs.emplace(actual.ToString(), std::move(blob));
    store_.ingests_[ctx_.ns].erase(ref);
    return absl::OkStatus();
  }

  void ReleaseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_.mu_) {
    if (!released_) {
      released_ = true;
      ingest_->locked = false;
    }
  }

  MemoryContentStore& store_;
  const Context ctx_;
  std::shared_ptr<Ingest> ingest_;
  bool released_ = false;  // guarded by store_.mu_
};

absl::StatusOr<std::unique_ptr<Writer>> MemoryContentStore::OpenWriter(
    const Context& ctx, const WriterOptions& opts) {
  if (absl::Status st = ValidateNamespace(ctx.ns); !st.ok()) {
    return st;
  }
  if (opts.ref.empty()) {
    return absl::InvalidArgumentError("ref must not be empty");
  }
  absl::MutexLock lock(&mu_);
  if (!opts.expected.IsEmpty() && blobs_[ctx.ns].count(opts.expected.ToString()) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("content ", opts.expected.ToString(), ": already exists"));
  }
  std::shared_ptr<Ingest>& ingest = ingests_[ctx.ns][opts.ref];
  if (ingest == nullptr) {
    ingest = std::make_shared<Ingest>();
    ingest->status.ref = opts.ref;
    ingest->status.total = opts.total;
    ingest->status.expected = opts.expected;
    ingest->status.started_at = absl::Now();
    ingest->status.updated_at = ingest->status.started_at;
  } else if (ingest->locked) {
    return absl::UnavailableError(absl::StrCat("ref ", opts.ref, " is locked by another writer"));
  }
  ingest->locked = true;
  return std::unique_ptr<Writer>(new MemoryWriter(*this, ctx, ingest));
}

}  // namespace

std::unique_ptr<ContentStore> NewMemoryContentStore() {
  return std::make_unique<MemoryContentStore>();
}

}  // namespace berth::content
