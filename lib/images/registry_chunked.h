#pragma once

// A blob fetched as parallel Range requests (containerd 2.1's multipart layer fetch), handed to
// its consumer in order. Internal to berth_registry; RegistryClient::FetchBlob uses it.
//
// How: the first chunk's request is the probe. Answered 206, its bytes go straight to the
// consumer while `parallel` worker threads fetch the next chunks into memory, each as one
// "Range: bytes=a-b" request; the calling thread then hands the chunks over in order. A chunk
// whose connection drops is asked again for the rest of it (Range from the byte it reached), up
// to max_attempts. Answered 200 (a registry that ignores Range), the probe's body is streamed to
// the consumer as a plain GET would be, and Fetch says kNoRanges: the caller goes on the
// sequential way from what was delivered. A worker answered 200 later stops the chunked fetch the
// same way.
//
// Memory: the chunks held in memory, over every blob this fetcher serves at once, never exceed
// `max_buffered` bytes (a worker waits for room before it asks for a chunk), and per blob a
// worker fetches at most `parallel` chunks ahead of the consumer. The probe's chunk is not
// buffered. No deadlock: a blob holds budget only for chunks already being fetched, which finish.
// The buffers are anonymous mappings of chunk_size bytes, reused while fetches run and
// unmapped once none does.
//
// Thread-safe: Fetch may run for several blobs at once.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/context.h"
#include "lib/images/registry_http.h"

namespace berth::images {

class ChunkedFetcher {
 public:
  // chunk_size > 0, parallel >= 1, max_buffered >= chunk_size.
  ChunkedFetcher(RegistryHttp& http, int64_t chunk_size, int parallel, int64_t max_buffered);
  ~ChunkedFetcher();
  ChunkedFetcher(const ChunkedFetcher&) = delete;
  ChunkedFetcher& operator=(const ChunkedFetcher&) = delete;

  // Whether a blob with `remaining` bytes left to fetch is worth chunking: more than one chunk.
  bool Wants(int64_t remaining) const { return remaining > chunk_size_; }

  enum class Outcome {
    kDone,      // every byte up to `size` was delivered
    kNoRanges,  // the registry ignores Range: *pos is where the caller goes on from
  };
  // Fetches bytes [*pos, size) of the blob at base.url (base: host, config, scope, url, headers;
  // no callbacks), handing each piece to `deliver` in order on the calling thread; *pos
  // advances with every byte delivered. `what` names the blob in errors. Errors: deliver's
  // (the transfer stops), RegistryError for an HTTP error, InvalidArgument when the registry's
  // ranges do not fit the blob (a Content-Range that is not the one asked for, a total that is
  // not `size`, more bytes than asked), Unavailable when a chunk keeps dropping, the Context's.
  absl::StatusOr<Outcome> Fetch(const Context& ctx, const HttpRequest& base, int64_t size,
                                const std::string& what, int64_t* pos,
                                const std::function<absl::Status(absl::string_view)>& deliver);

 private:
  struct Blob;
  // Bytes [from, to) with one Range request, again for the rest when it drops. With
  // `accept_whole`, a 200 is taken as the whole blob from byte 0 (its first `from` bytes
  // skipped, the rest up to `size` handed to `take`) and *whole is set; without, a 200 sets
  // *whole and fails.
  absl::Status FetchRange(const Context& ctx, const HttpRequest& base, int64_t size,
                          const std::string& what, int64_t from, int64_t to, bool accept_whole,
                          bool* whole,
                          const std::function<absl::Status(absl::string_view)>& take);
  void Work(Blob* blob);
  // A chunk_size_ buffer: a free one, else a fresh anonymous mapping (not malloc: glibc's
  // per-thread arenas would keep freed chunks resident).
  char* TakeBuffer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void GiveBack(char* buf) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RegistryHttp& http_;
  const int64_t chunk_size_;
  const int parallel_;
  const int64_t max_buffered_;
  absl::Mutex mu_;
  int64_t buffered_ ABSL_GUARDED_BY(mu_) = 0;  // bytes of chunks taken and not yet delivered
  int active_ ABSL_GUARDED_BY(mu_) = 0;        // Fetch calls running
  std::vector<char*> free_buffers_ ABSL_GUARDED_BY(mu_);  // unmapped when active_ drops to 0
};

}  // namespace berth::images
