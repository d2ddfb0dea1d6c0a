#pragma once

// One download of a blob at a time among one imaged's pulls: two pulls of the same image (or
// of images sharing layers) that want the same blob share one download. The first holds the
// blob's key while it downloads; the others wait for it to let go, then find the blob in the
// store (or, when that download failed, the next one tries). Without it the second pull's
// writer would wait on contentd's ref lock, which gives up after about a second.
//
// Thread-safe.

#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/base/context.h"

namespace berth::imaged {

class DownloadFlights {
 public:
  // Holds `key` while it lives; waits first while another holder has it.
  class Hold {
   public:
    Hold(DownloadFlights& flights, std::string key)
        : flights_(flights), key_(std::move(key)) {}
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() {
      absl::MutexLock lock(&flights_.mu_);
      flights_.held_.erase(key_);
    }

   private:
    DownloadFlights& flights_;
    const std::string key_;
  };

  // Waits while another Hold has `key`, then holds it. Returns ctx's error (and holds nothing)
  // if ctx stops being Alive() first.
  absl::StatusOr<std::unique_ptr<Hold>> Acquire(const Context& ctx, const std::string& key) {
    absl::MutexLock lock(&mu_);
    auto free = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_.count(key) == 0; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&free), absl::Milliseconds(100))) {
      if (absl::Status alive = ctx.Alive(); !alive.ok()) {
        return alive;
      }
    }
    held_.insert(key);
    return std::make_unique<Hold>(*this, key);
  }

 private:
  absl::Mutex mu_;
  std::set<std::string> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::imaged
