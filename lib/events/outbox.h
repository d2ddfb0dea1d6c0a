#pragma once

// NatsPublisher's outbox: the events a daemon published and the bus has not confirmed yet, in a
// sqlite file, in publish order. Append returns once its row is durable (fsync); the sender
// reads rows in id order and deletes a confirmed prefix. Row ids are never reused
// (AUTOINCREMENT), and the random publisher id is kept in the file, so "<publisher id>-<row
// id>" names one event forever (NatsPublisher's Msg-Id). Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/base/group_commit.h"
#include "lib/sqlite/sqlite.h"

namespace berth::events {

struct OutboxRow {
  int64_t id;
  std::string subject;
  std::string payload;
};

class Outbox {
 public:
  // Told the number of pending rows whenever it changes (under the outbox's lock: be quick).
  using PendingObserver = std::function<void(int64_t pending)>;

  // Opens (or creates) the outbox at `path`, creating the publisher id on first use. Errors
  // name the file: Internal or FailedPrecondition as sqlite reports them.
  static absl::StatusOr<std::unique_ptr<Outbox>> Open(const std::string& path,
                                                      PendingObserver on_pending = nullptr);
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // The random id kept in the file.
  const std::string& publisher_id() const { return publisher_id_; }

  // Stores one row and returns once it is durable. Group commit (after LevelDB's writer
  // queue): the Append at the front of the queue commits every row queued so far in one
  // transaction (one fsync), so concurrent Appends share it. Errors as sqlite's, prefixed
  // "events outbox: ".
  // With a `key`, the row is stored only if the key is not remembered yet, and the key is
  // remembered in the same transaction (until Forget): a repeat returns OK and stores nothing.
  absl::Status Append(std::string subject, std::string payload, int64_t unix_nanos,
                      std::string key = "");
  // Stores several rows (subject, payload) in order, all in one transaction, and returns once
  // they are durable: Append's group commit with one place in the queue for all of them.
  absl::Status AppendAll(std::vector<std::pair<std::string, std::string>> rows,
                         int64_t unix_nanos);
  // Forgets a key Append remembered. OK if it was not.
  absl::Status Forget(absl::string_view key);

  // Up to `limit` rows with ids above `after_id`, in id order.
  absl::StatusOr<std::vector<OutboxRow>> ReadAfter(int64_t after_id, int64_t limit);

  // Deletes every row up to `last_id`: `rows` of them, of which `dropped` were never
  // delivered. No fsync of its own: a delete lost to a power cut only resends rows, which
  // the stream drops by Msg-Id; the next Append's fsync makes it durable.
  absl::Status DeleteThrough(int64_t last_id, int64_t rows, int64_t dropped);

  // Rows stored and not yet deleted.
  int64_t pending() const;
  // Rows deleted as delivered since Open.
  int64_t delivered() const;
  // Waits until no row is pending (true) or `timeout` passes (false).
  bool WaitForEmpty(absl::Duration timeout);

 private:
  struct Waiter;  // an Append waiting for its turn or its group's commit
  absl::Status Enqueue(Waiter& waiter);

  Outbox(std::unique_ptr<sqlite::Db> db, std::string publisher_id, int64_t pending,
         PendingObserver on_pending);
  absl::Status Commit(const std::vector<Waiter*>& group);
  void SetPendingLocked(int64_t pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string publisher_id_;
  const PendingObserver on_pending_;

  // The Appends waiting to commit; the front one commits for the group, at most 1024 Appends
  // in one transaction (taking mu_: never queue while holding it).
  GroupCommitQueue<Waiter> writers_{1024};

  mutable absl::Mutex mu_;
  std::unique_ptr<sqlite::Db> db_ ABSL_GUARDED_BY(mu_);
  int64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace berth::events
