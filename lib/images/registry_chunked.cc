#include "lib/images/registry_chunked.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"

namespace berth::images {
namespace {

// "bytes <first>-<last>/<total>" (total "*": unknown, -1).
struct ContentRange {
  int64_t first = -1;
  int64_t last = -1;
  int64_t total = -1;
};

bool ParseContentRange(absl::string_view text, ContentRange* out) {
  if (!absl::ConsumePrefix(&text, "bytes ")) {
    return false;
  }
  size_t dash = text.find('-');
  size_t slash = text.find('/');
  if (dash == absl::string_view::npos || slash == absl::string_view::npos || slash < dash) {
    return false;
  }
  absl::string_view total = text.substr(slash + 1);
  return absl::SimpleAtoi(text.substr(0, dash), &out->first) &&
         absl::SimpleAtoi(text.substr(dash + 1, slash - dash - 1), &out->last) &&
         out->first <= out->last && (total == "*" || absl::SimpleAtoi(total, &out->total));
}

// The registry answered a range request with 200: it ignores Range.
absl::Status RangesIgnored(const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": the registry ignores Range"));
}

}  // namespace

// One blob's chunks, guarded by the fetcher's mu_.
struct ChunkedFetcher::Blob {
  struct Chunk {
    int64_t end = 0;
    char* buf = nullptr;  // chunk_size_ bytes from the pool
    int64_t len = 0;      // bytes in buf
    bool done = false;
    absl::Status status;
    bool ranges_ignored = false;  // answered 200: the caller goes on without ranges
  };
  Context ctx;  // the caller's, with `cancel` as its cancellation
  std::shared_ptr<Cancellation> cancel;
  const HttpRequest* base = nullptr;
  int64_t size = 0;
  const std::string* what = nullptr;
  int64_t next = 0;      // where the next chunk a worker takes starts
  int64_t consumer = 0;  // where the chunk the consumer waits for starts
  bool stop = false;
  std::map<int64_t, Chunk> chunks;  // taken and not yet delivered, by start
  std::vector<std::thread> workers;
};

ChunkedFetcher::ChunkedFetcher(RegistryHttp& http, int64_t chunk_size, int parallel,
                               int64_t max_buffered)
    : http_(http),
      chunk_size_(std::max<int64_t>(1, chunk_size)),
      parallel_(std::max(1, parallel)),
      max_buffered_(std::max(max_buffered, chunk_size_)) {}

absl::Status ChunkedFetcher::FetchRange(
    const Context& ctx, const HttpRequest& base, int64_t size, const std::string& what,
    int64_t from, int64_t to, bool accept_whole, bool* whole,
    const std::function<absl::Status(absl::string_view)>& take) {
  int64_t at = from;
  for (int attempt = 1;; ++attempt) {
    int64_t skip = 0;  // a 200's bytes before `from`
    int64_t limit = to;
    HttpRequest req = base;
    req.headers.push_back(absl::StrCat("Range: bytes=", at, "-", to - 1));
    req.on_start = [&](const HttpResponse& resp) -> absl::Status {
      if (resp.code != 206) {
        *whole = true;
        if (!accept_whole) {
          return RangesIgnored(what);
        }
        skip = at;
        limit = size;
        return absl::OkStatus();
      }
      ContentRange range;
      if (!ParseContentRange(resp.Header("content-range"), &range) || range.first != at ||
          range.last >= to) {
        return absl::InvalidArgumentError(absl::StrCat(
            "registry ", base.host, ": ", what, ": asked for bytes ", at, "-", to - 1, ", got \"",
            resp.Header("content-range"), "\""));
      }
      if (range.total >= 0 && range.total != size) {
        return absl::InvalidArgumentError(
            absl::StrCat("registry ", base.host, ": ", what, ": ", range.total,
                         " bytes, the descriptor says ", size));
      }
      return absl::OkStatus();
    };
    req.on_data = [&](absl::string_view data) -> absl::Status {
      size_t n = static_cast<size_t>(std::min<int64_t>(skip, data.size()));
      data.remove_prefix(n);
      skip -= static_cast<int64_t>(n);
      if (at + static_cast<int64_t>(data.size()) > limit) {
        return absl::InvalidArgumentError(
            absl::StrCat("registry ", base.host, ": ", what,
                         limit == size ? ": larger than the descriptor's " : ": more than the ",
                         limit == size ? size : to - at, " bytes",
                         limit == size ? "" : " asked for"));
      }
      at += static_cast<int64_t>(data.size());
      return data.empty() ? absl::OkStatus() : take(data);
    };
    BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(ctx, std::move(req)));
    if (resp.code != 200 && resp.code != 206) {
      return RegistryError(base.host, what, resp);
    }
    BERTH_RETURN_IF_ERROR(resp.write_status);
    if (resp.transfer_ok && at == limit) {
      return absl::OkStatus();
    }
    if (resp.code == 200) {
      return absl::OkStatus();  // the caller goes on from where the whole body stopped
    }
    // Dropped mid-chunk, or a shorter range than asked for: ask again for the rest.
    if (attempt >= http_.max_attempts()) {
      return absl::UnavailableError(absl::StrCat(
          "registry ", base.host, ": ", what, ": bytes ", at, "-", to - 1, " did not arrive (",
          resp.transfer_ok ? std::string("short range") : resp.transfer_error, ")"));
    }
    BERTH_RETURN_IF_ERROR(http_.Backoff(ctx, attempt));
  }
}

char* ChunkedFetcher::TakeBuffer() {
  if (!free_buffers_.empty()) {
    char* buf = free_buffers_.back();
    free_buffers_.pop_back();
    return buf;
  }
  void* mem = ::mmap(nullptr, static_cast<size_t>(chunk_size_), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    BERTH_LOG(Error) << "mmap of a " << chunk_size_ << "-byte chunk buffer failed";
    std::abort();
  }
  return static_cast<char*>(mem);
}

void ChunkedFetcher::GiveBack(char* buf) {
  if (buf != nullptr) {
    free_buffers_.push_back(buf);
  }
}

ChunkedFetcher::~ChunkedFetcher() {
  absl::MutexLock lock(&mu_);
  for (char* buf : free_buffers_) {
    ::munmap(buf, static_cast<size_t>(chunk_size_));
  }
}

void ChunkedFetcher::Work(Blob* blob) {
  for (;;) {
    int64_t start = 0;
    int64_t end = 0;
    char* buf = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (blob->stop || blob->next >= blob->size) {
          return true;
        }
        int64_t len = std::min(chunk_size_, blob->size - blob->next);
        return blob->next < blob->consumer + parallel_ * chunk_size_ &&
               buffered_ + len <= max_buffered_;
      };
      mu_.Await(absl::Condition(&ready));
      if (blob->stop || blob->next >= blob->size) {
        return;
      }
      start = blob->next;
      end = std::min(start + chunk_size_, blob->size);
      blob->next = end;
      buffered_ += end - start;
      blob->chunks[start].end = end;
      blob->chunks[start].buf = TakeBuffer();
      buf = blob->chunks[start].buf;
    }
    // FetchRange hands over at most end - start bytes: buf never overflows.
    int64_t len = 0;
    bool whole = false;
    absl::Status status = FetchRange(blob->ctx, *blob->base, blob->size, *blob->what, start, end,
                                     false, &whole, [&](absl::string_view piece) {
                                       std::memcpy(buf + len, piece.data(), piece.size());
                                       len += static_cast<int64_t>(piece.size());
                                       return absl::OkStatus();
                                     });
    absl::MutexLock lock(&mu_);
    Blob::Chunk& chunk = blob->chunks[start];
    chunk.len = len;
    chunk.status = std::move(status);
    chunk.ranges_ignored = whole;
    chunk.done = true;
    if (!chunk.status.ok()) {
      return;  // the consumer stops the others when it reaches this chunk
    }
  }
}

absl::StatusOr<ChunkedFetcher::Outcome> ChunkedFetcher::Fetch(
    const Context& ctx, const HttpRequest& base, int64_t size, const std::string& what,
    int64_t* pos, const std::function<absl::Status(absl::string_view)>& deliver) {
  Blob blob;
  blob.cancel = std::make_shared<Cancellation>([ctx] { return !ctx.Alive().ok(); });
  blob.ctx = ctx;
  blob.ctx.cancellation = blob.cancel;
  blob.base = &base;
  blob.size = size;
  blob.what = &what;
  const int64_t first_end = std::min(*pos + chunk_size_, size);
  {
    absl::MutexLock lock(&mu_);
    blob.next = first_end;
    blob.consumer = first_end;
    ++active_;
  }
  // Stops the workers and gives back what their chunks held, however Fetch ends.
  auto stop = [&] {
    {
      absl::MutexLock lock(&mu_);
      blob.stop = true;
    }
    blob.cancel->Cancel();
    for (std::thread& worker : blob.workers) {
      worker.join();
    }
    absl::MutexLock lock(&mu_);
    for (const auto& [start, chunk] : blob.chunks) {
      buffered_ -= chunk.end - start;
      GiveBack(chunk.buf);
    }
    blob.chunks.clear();
    if (--active_ == 0) {
      // No fetch runs: the buffers go back to the system, so an idle imaged holds none.
      for (char* buf : free_buffers_) {
        ::munmap(buf, static_cast<size_t>(chunk_size_));
      }
      free_buffers_.clear();
    }
  };
  struct Stopper {
    std::function<void()> fn;
    ~Stopper() { fn(); }
  } stopper{stop};

  auto give = [&](absl::string_view data) {
    BERTH_RETURN_IF_ERROR(deliver(data));
    *pos += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  };
  // The probe: the first chunk, straight to the consumer. Its 206 starts the workers.
  bool whole = false;
  bool started = false;
  auto start_workers = [&] {
    if (started) {
      return;
    }
    started = true;
    for (int i = 0; i < parallel_; ++i) {
      blob.workers.emplace_back([this, &blob] { Work(&blob); });
    }
  };
  absl::Status probed =
      FetchRange(blob.ctx, base, size, what, *pos, first_end, true, &whole,
                 [&](absl::string_view data) {
                   if (!whole) {
                     start_workers();
                   }
                   return give(data);
                 });
  if (whole) {
    BERTH_RETURN_IF_ERROR(probed);
    return Outcome::kNoRanges;
  }
  BERTH_RETURN_IF_ERROR(probed);
  start_workers();
  while (*pos < size) {
    const int64_t start = *pos;
    absl::string_view data;
    {
      absl::MutexLock lock(&mu_);
      blob.consumer = start;
      auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        auto it = blob.chunks.find(start);
        return it != blob.chunks.end() && it->second.done;
      };
      mu_.Await(absl::Condition(&arrived));
      Blob::Chunk& chunk = blob.chunks[start];
      if (chunk.ranges_ignored) {
        return Outcome::kNoRanges;
      }
      BERTH_RETURN_IF_ERROR(chunk.status);
      data = absl::string_view(chunk.buf, static_cast<size_t>(chunk.len));
    }
    // The chunk stays in blob.chunks (and its buffer with it) until it is delivered: on an
    // error the stopper gives it back.
    BERTH_RETURN_IF_ERROR(give(data));
    absl::MutexLock lock(&mu_);
    auto delivered = blob.chunks.find(start);
    buffered_ -= delivered->second.end - start;
    GiveBack(delivered->second.buf);
    blob.chunks.erase(delivered);
  }
  return Outcome::kDone;
}

}  // namespace berth::images
