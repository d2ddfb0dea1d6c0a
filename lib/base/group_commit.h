#pragma once

// Group commit (after LevelDB's writer queue): callers that each need something made durable
// queue up; the one at the front commits its own item and every item queued behind it (up to
// a limit) in one go, then hands the front to the next. Items that arrive while a commit runs
// form the next group, so one fsync is shared by as many callers as arrive during the previous
// one, and nobody returns before its own item was committed. Used by the events outbox
// (lib/events/outbox.cc) and contentd's blob commits (services/contentd/local_commit.cc).

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace berth {

// T is the caller's record of one item (it lives on the caller's stack while Run runs).
// Thread-safe.
template <typename T>
class GroupCommitQueue {
 public:
  explicit GroupCommitQueue(size_t max_group) : max_group_(std::max<size_t>(1, max_group)) {}
  GroupCommitQueue(const GroupCommitQueue&) = delete;
  GroupCommitQueue& operator=(const GroupCommitQueue&) = delete;

  // Queues `item` and returns once a `commit` call (this caller's or an earlier one's) has
  // processed a group holding it. `commit` gets the group in arrival order and records each
  // item's result in the item itself; groups never overlap.
  void Run(T* item, const std::function<void(const std::vector<T*>& group)>& commit) {
    Entry entry{item};
    struct Turn {
      GroupCommitQueue* self;
      Entry* entry;
    } turn{this, &entry};
    mu_.Lock();
    queue_.push_back(&entry);
    mu_.Await(absl::Condition(
        +[](Turn* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->self->mu_) {
          return t->entry->done || t->self->queue_.front() == t->entry;
        },
        &turn));
    if (entry.done) {
      mu_.Unlock();
      return;
    }
    const size_t size = std::min(queue_.size(), max_group_);
    std::vector<Entry*> entries(queue_.begin(), queue_.begin() + size);
    mu_.Unlock();

    std::vector<T*> group;
    for (Entry* e : entries) {
      group.push_back(e->item);
    }
    commit(group);

    mu_.Lock();
    for (Entry* e : entries) {
      if (queue_.front() != e) {  // only the front commits, and nobody else pops
        std::abort();
      }
      queue_.pop_front();
      e->done = true;
    }
    mu_.Unlock();
  }

 private:
  struct Entry {
    T* item;
    bool done = false;  // guarded by mu_
  };

  const size_t max_group_;
  absl::Mutex mu_;
  std::deque<Entry*> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth
