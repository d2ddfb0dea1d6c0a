#include "lib/images/curl_engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "lib/base/logging.h"

namespace berth::images {
namespace {

// The upload buffer: the caller refills it when under half of this.
constexpr size_t kUploadBuffer = 256 << 10;
constexpr int64_t kReadBuffer = 256 << 10;
// The body bytes that wake the caller (fewer, larger hand-overs between threads).
constexpr int64_t kHandOver = 256 << 10;

}  // namespace

// One transfer's state, shared by its caller and the loop; the fields under `mu`.
struct CurlEngine::Transfer {
  CurlEngine* engine = nullptr;
  CURL* curl = nullptr;
  bool upload = false;
  absl::Mutex mu;
  std::string in ABSL_GUARDED_BY(mu);  // body bytes the caller has not taken
  bool write_paused ABSL_GUARDED_BY(mu) = false;
  std::string out ABSL_GUARDED_BY(mu);  // upload bytes curl has not taken, from out_pos
  size_t out_pos ABSL_GUARDED_BY(mu) = 0;
  bool out_eof ABSL_GUARDED_BY(mu) = false;
  bool read_paused ABSL_GUARDED_BY(mu) = false;
  int64_t sent ABSL_GUARDED_BY(mu) = 0;
  bool cut ABSL_GUARDED_BY(mu) = false;  // the caller stops it: the loop refuses more data
  CURLcode cut_code ABSL_GUARDED_BY(mu) = CURLE_OK;
  bool done ABSL_GUARDED_BY(mu) = false;
  int pending ABSL_GUARDED_BY(mu) = 0;  // commands queued for it that the loop has not run
  CURLcode result ABSL_GUARDED_BY(mu) = CURLE_OK;
};

CurlEngine::CurlEngine(CurlEngineOptions options) : options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    BERTH_LOG(Error) << "curl_multi_init failed (out of memory)";
    std::abort();
  }
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING,
                    options_.multiplex ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, options_.max_host_connections);
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, options_.max_total_connections);
  loop_ = std::thread([this] { Loop(); });
}

CurlEngine::~CurlEngine() {
  Stop();
  curl_multi_cleanup(multi_);
}

void CurlEngine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !loop_.joinable()) {
      return;
    }
    stopping_ = true;
  }
  curl_multi_wakeup(multi_);
  if (loop_.joinable()) {
    loop_.join();
  }
}

bool CurlEngine::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

int64_t CurlEngine::buffered_high_water() const {
  absl::MutexLock lock(&mu_);
  return high_water_;
}

int64_t CurlEngine::pauses() const {
  absl::MutexLock lock(&mu_);
  return pauses_;
}

void CurlEngine::NoteBuffered(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  high_water_ = std::max(high_water_, bytes);
}

bool CurlEngine::Send(Op op, Transfer* t) {
  {
    absl::MutexLock lock(&mu_);
    if (loop_exited_ || (stopping_ && op == Op::kAdd)) {
      return false;
    }
    absl::MutexLock transfer_lock(&t->mu);
    ++t->pending;
    commands_.push_back({op, t});
  }
  curl_multi_wakeup(multi_);
  return true;
}

size_t CurlEngine::OnWrite(char* data, size_t size, size_t count, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  const size_t n = size * count;
  int64_t held = 0;
  {
    absl::MutexLock lock(&t->mu);
    if (t->cut) {
      return 0;  // CURLE_WRITE_ERROR: the caller is removing it
    }
    // Into an empty buffer any piece fits, so a transfer always moves.
    if (!t->in.empty() &&
        static_cast<int64_t>(t->in.size() + n) > t->engine->options_.buffer_limit) {
      t->write_paused = true;
    } else {
      t->in.append(data, n);
      held = static_cast<int64_t>(t->in.size());
    }
  }
  if (held == 0) {
    absl::MutexLock lock(&t->engine->mu_);
    ++t->engine->pauses_;
    return CURL_WRITEFUNC_PAUSE;  // curl hands the same piece again once resumed
  }
  t->engine->NoteBuffered(held);
  return n;
}

size_t CurlEngine::OnRead(char* buf, size_t size, size_t count, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  absl::MutexLock lock(&t->mu);
  if (t->cut) {
    return CURL_READFUNC_ABORT;
  }
  const size_t have = t->out.size() - t->out_pos;
  if (have == 0) {
    if (t->out_eof) {
      return 0;
    }
    t->read_paused = true;
    return CURL_READFUNC_PAUSE;
  }
  const size_t n = std::min(have, size * count);
  std::memcpy(buf, t->out.data() + t->out_pos, n);
  t->out_pos += n;
  t->sent += static_cast<int64_t>(n);
  return n;
}

CURLcode CurlEngine::Perform(const Context& ctx, CURL* curl, const CurlHandlers& handlers) {
  Transfer t;
  t.engine = this;
  t.curl = curl;
  t.upload = static_cast<bool>(handlers.read);
  curl_easy_setopt(curl, CURLOPT_PRIVATE, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  if (t.upload) {
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &t);
  }
  // Larger reads than curl's 16 KiB: fewer callbacks and hand-overs per byte; and with curl
  // 7.88 a paused HTTP/2 stream holds up its connection only once more than this has arrived
  // for it (curl issue #10988, fixed in 8.1).
  // No larger than the transfer's buffer, so a piece always fits in an empty one.
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE,
                   static_cast<long>(std::clamp<int64_t>(options_.buffer_limit, 16 << 10,
                                                         kReadBuffer)));
  // See CurlHandlers::tls.
  curl_easy_setopt(curl, CURLOPT_PIPEWAIT, options_.multiplex && handlers.tls ? 1L : 0L);
  if (!Send(Op::kAdd, &t)) {
    return kStopped;
  }
  bool cutting = false;
  CURLcode cut_code = CURLE_OK;
  auto cut = [&](CURLcode code) {
    if (cutting) {
      return;
    }
    cutting = true;
    cut_code = code;
    bool finished = false;
    {
      absl::MutexLock lock(&t.mu);
      t.cut = true;
      t.cut_code = code;
      finished = t.done;
    }
    // A transfer the loop has finished is out of the multi: nothing to remove, and a command
    // queued now could outlive `t` (this call returns as soon as it sees the transfer done).
    if (!finished) {
      Send(Op::kRemove, &t);
    }
  };
  const int64_t hand_over = std::min<int64_t>(kHandOver, options_.buffer_limit / 2);
  int64_t reported_sent = 0;
  std::string data;
  std::string chunk;
  for (;;) {
    bool resume = false;
    bool done = false;
    bool want_upload = false;
    int64_t sent = 0;
    CURLcode result = CURLE_OK;
    {
      absl::MutexLock lock(&t.mu);
      // Body bytes are taken in batches (a wake-up per curl read cost ~15% more CPU on the
      // bench pull), or whatever there is once curl pauses or the transfer ends.
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(t.mu) {
        return static_cast<int64_t>(t.in.size()) >= hand_over ||
               (!t.in.empty() && t.write_paused) || (t.done && t.pending == 0) ||
               (t.upload && !cutting && !t.out_eof &&
                t.out.size() - t.out_pos < kUploadBuffer / 2) ||
               t.sent != reported_sent;
      };
      t.mu.AwaitWithTimeout(absl::Condition(&ready), kContextPoll);
      data.clear();
      data.swap(t.in);
      if (t.write_paused && !cutting && !t.done) {
        t.write_paused = false;
        resume = true;
      }
      // Done once no command for it is left in the queue either: the loop must not see this
      // Transfer after Perform returns.
      done = t.done && t.pending == 0;
      result = t.result;
      sent = t.sent;
      want_upload = t.upload && !cutting && !t.out_eof && !done &&
                    t.out.size() - t.out_pos < kUploadBuffer / 2;
    }
    if (resume) {
      Send(Op::kResume, &t);
    }
    if (!data.empty() && !cutting && !handlers.on_body(data)) {
      cut(CURLE_WRITE_ERROR);
    }
    if (sent != reported_sent) {
      reported_sent = sent;
      if (handlers.on_sent) {
        handlers.on_sent(sent);
      }
    }
    if (done) {
      return cutting ? cut_code : result;
    }
    if (!cutting && !ctx.Alive().ok()) {
      cut(CURLE_ABORTED_BY_CALLBACK);
    }
    if (want_upload && !cutting) {
      chunk.resize(kUploadBuffer / 2);
      absl::StatusOr<size_t> n = handlers.read(chunk.data(), chunk.size());
      if (!n.ok()) {
        cut(CURLE_ABORTED_BY_CALLBACK);
        continue;
      }
      bool wake = false;
      {
        absl::MutexLock lock(&t.mu);
        t.out.erase(0, t.out_pos);
        t.out_pos = 0;
        t.out.append(chunk.data(), *n);
        t.out_eof = *n == 0;
        wake = t.read_paused;
        t.read_paused = false;
      }
      if (wake) {
        Send(Op::kResume, &t);
      }
    }
  }
}

void CurlEngine::Finish(Transfer* t, CURLcode code) {
  curl_multi_remove_handle(multi_, t->curl);
  running_.erase(t);
  absl::MutexLock lock(&t->mu);
  t->result = t->cut ? t->cut_code : code;
  t->done = true;
}

bool CurlEngine::RunCommands() {
  std::vector<Command> commands;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    commands.swap(commands_);
    stopping = stopping_;
  }
  for (const Command& c : commands) {
    Transfer* t = c.transfer;
    switch (c.op) {
      case Op::kAdd:
        if (curl_multi_add_handle(multi_, t->curl) == CURLM_OK) {
          running_.insert(t);
        } else {
          absl::MutexLock lock(&t->mu);
          t->result = CURLE_FAILED_INIT;
          t->done = true;
        }
        break;
      case Op::kResume:
        if (running_.count(t) != 0) {
          curl_easy_pause(t->curl, CURLPAUSE_CONT);  // may call OnWrite / OnRead right away
        }
        break;
      case Op::kRemove:
        if (running_.count(t) != 0) {
          Finish(t, CURLE_ABORTED_BY_CALLBACK);
        }
        break;
    }
    absl::MutexLock lock(&t->mu);
    --t->pending;  // the caller may return (and free t) from here
  }
  return !stopping;
}

void CurlEngine::Loop() {
  for (;;) {
    if (!RunCommands()) {
      break;
    }
    int running = 0;
    curl_multi_perform(multi_, &running);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) {
        continue;
      }
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      CURLcode result = msg->data.result;
      Finish(t, result);  // msg is invalid from here
    }
    curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
  }
  // Stopping: every transfer still in the multi ends with kStopped. Commands queued after the
  // last round are removes and resumes of those (adds are refused once stopping_ is set).
  while (!running_.empty()) {
    Transfer* t = *running_.begin();
    {
      absl::MutexLock lock(&t->mu);
      t->cut = false;
    }
    Finish(t, kStopped);
  }
  {
    absl::MutexLock lock(&mu_);
    loop_exited_ = true;  // Send queues nothing more
  }
  RunCommands();  // what was queued since: removes and resumes of transfers now done
}

}  // namespace berth::images
