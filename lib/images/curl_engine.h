#pragma once

// The transfer engine under RegistryHttp (lib/images/registry_http.h): one libcurl multi handle
// driven by one event-loop thread, on which every request's easy handle runs. Internal to
// berth_registry.
//
// Why: the multi's connection cache is shared by every request, and with CURLPIPE_MULTIPLEX
// concurrent requests to an HTTP/2 registry run as streams of one connection (the easy
// interface cannot multiplex); HTTP/1.1 connections are reused the same way.
//
// Perform blocks the calling thread until its transfer ends, and runs the caller's handlers on
// that thread, never on the loop: a slow consumer stalls only its own transfer. Body bytes go
// from curl's write callback (on the loop) into a per-transfer buffer of at most
// `buffer_limit` bytes; when it is full the callback pauses the transfer
// (CURL_WRITEFUNC_PAUSE), and the caller, having drained it, asks the loop to resume it
// (curl_easy_pause is only ever called on the loop thread). Uploads work the other way round:
// the caller reads the body source into a bounded buffer, curl's read callback takes from it
// and pauses (CURL_READFUNC_PAUSE) when it is empty.
//
// HTTP/2 with curl 7.88 (Debian 12): a paused stream can hold up the other streams of its
// connection (curl issue #10988, fixed in 8.1) once more data arrived for it than curl can keep
// aside. Seen in registry_engine_test: with curl's default 16 KiB read buffer the other
// download stalled behind a blocked consumer; with CURLOPT_BUFFERSIZE at the buffer limit
// (64 KiB there, up to 256 KiB) it completed. A consumer lagging far behind may still slow its
// connection's other downloads until it drains. HTTP/1.1 transfers have their own connections.
//
// Ending: a Context that ends, or a handler that refuses, has the loop remove the easy handle
// from the multi at once (the caller checks its Context every kContextPoll), whatever the
// server does. Stop() (and the destructor) ends every transfer in flight with kStopped and
// makes later calls fail the same way.

#include <curl/curl.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/base/context.h"

namespace berth::images {

struct CurlEngineOptions {
  // Connections open at once to one host, and in all (CURLMOPT_MAX_HOST_CONNECTIONS,
  // CURLMOPT_MAX_TOTAL_CONNECTIONS); transfers beyond wait for one. HTTP/2 streams on a
  // connection do not count.
  long max_host_connections = 16;
  long max_total_connections = 64;
  bool multiplex = true;  // CURLPIPE_MULTIPLEX (false only for tests that show what it gives)
  // Body bytes held per transfer between curl and its caller.
  int64_t buffer_limit = int64_t{512} << 10;
};

// What a transfer's caller does with it; every handler runs on the caller's thread.
struct CurlHandlers {
  // An https:// URL: HTTP/2 may be offered (ALPN), so the transfer waits for a connection
  // being set up to the host to learn whether it can share it (CURLOPT_PIPEWAIT). Plain http is
  // HTTP/1.1 here (no h2c): waiting would only serialise requests that need connections.
  bool tls = false;
  // Each piece of the response body, in order (every response's, the final one's status
  // included). False cuts the transfer: Perform returns CURLE_WRITE_ERROR.
  std::function<bool(absl::string_view data)> on_body;
  // Set for a request with a body: fills up to `size` bytes of it, 0 at its end. An error cuts
  // the transfer: Perform returns CURLE_ABORTED_BY_CALLBACK.
  std::function<absl::StatusOr<size_t>(char* buf, size_t size)> read;
  // The bytes of the body curl has taken so far, when that grows.
  std::function<void(int64_t sent)> on_sent;
};

class CurlEngine {
 public:
  // What Perform returns for a transfer the engine stopped (its own code: curl never uses it).
  static constexpr CURLcode kStopped = CURLE_OBSOLETE20;
  static constexpr absl::Duration kContextPoll = absl::Milliseconds(20);

  explicit CurlEngine(CurlEngineOptions options);
  ~CurlEngine();  // Stop()
  CurlEngine(const CurlEngine&) = delete;
  CurlEngine& operator=(const CurlEngine&) = delete;

  // Runs `curl` (set up by the caller, who keeps it: the engine sets its write, read and
  // private options and CURLOPT_PIPEWAIT) until it completes, `ctx` ends
  // (CURLE_ABORTED_BY_CALLBACK), a handler cuts it, or the engine stops (kStopped). The handle
  // is out of the multi when this returns, so the caller may read its info.
  CURLcode Perform(const Context& ctx, CURL* curl, const CurlHandlers& handlers);

  // Ends every transfer in flight (kStopped) and the loop thread; later Performs return kStopped.
  void Stop();
  bool stopped() const;

  // The most body bytes any transfer held in its buffer at once (never over buffer_limit but
  // for one piece curl hands over into an empty buffer), and the pauses so far: what tests read.
  int64_t buffered_high_water() const;
  int64_t pauses() const;
  const CurlEngineOptions& options() const { return options_; }

 private:
  struct Transfer;
  enum class Op { kAdd, kResume, kRemove };
  struct Command {
    Op op;
    Transfer* transfer;
  };
  static size_t OnWrite(char* data, size_t size, size_t count, void* arg);
  static size_t OnRead(char* buf, size_t size, size_t count, void* arg);
  // Queues a command for the loop and wakes it; false when the engine has stopped (then kAdd
  // was not queued).
  bool Send(Op op, Transfer* t);
  void Loop();
  // Runs the queued commands; false once Stop() asked the loop to end.
  bool RunCommands();
  void Finish(Transfer* t, CURLcode code);
  void NoteBuffered(int64_t bytes);

  const CurlEngineOptions options_;
  CURLM* multi_;
  mutable absl::Mutex mu_;
  std::vector<Command> commands_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool loop_exited_ ABSL_GUARDED_BY(mu_) = false;
  int64_t high_water_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pauses_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<Transfer*> running_;  // loop thread only: the handles in the multi
  std::thread loop_;
};

}  // namespace berth::images
