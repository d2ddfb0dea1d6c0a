// Tests for what only the local store can show: files on disk, crash recovery, GC and leases.
// The shared contract suite (lib/content/content_store_testsuite.h) covers the rest.

#include "services/contentd/local_content_store.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "containerd/events/content.pb.h"

namespace berth::contentd {
namespace {

// A Context in `ns` under `lease` (no deadline, no cancellation).
Context Ctx(std::string ns, std::string lease) {
  Context ctx;
  ctx.ns = std::move(ns);
  ctx.lease = std::move(lease);
  return ctx;
}

namespace fs = std::filesystem;
using content::Labels;

class RecordingPublisher : public events::Publisher {
 public:
  struct Event {
    std::string ns;
    std::string topic;
    std::string digest;
  };
  absl::Status Publish(absl::string_view ns, absl::string_view topic,
                       const google::protobuf::Message& event) override {
    containerd::events::ContentDelete del;
    EXPECT_TRUE(del.ParseFromString(event.SerializeAsString()));
    EXPECT_EQ(event.GetDescriptor()->full_name(), "containerd.events.ContentDelete");
    absl::MutexLock lock(&mu_);
    events_.push_back({std::string(ns), std::string(topic), del.digest()});
    return absl::OkStatus();
  }
  std::vector<Event> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(events_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

class LocalContentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/b-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  StoreOptions Options() {
    StoreOptions options;
    options.root = root_;
    options.publisher = &publisher_;
    options.lease_expiry_interval = absl::ZeroDuration();
    return options;
  }
  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<LocalContentStore>> store = LocalContentStore::Open(Options());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  absl::Status Put(const Context& ctx, absl::string_view data, const Labels& labels = {}) {
    return content::WriteBlob(*store_, ctx, absl::StrCat("ref-", Sha256Of(data).hex()), data,
                              Sha256Of(data), labels);
  }
  std::string BlobFile(absl::string_view data) {
    return absl::StrCat(root_, "/blobs/sha256/", Sha256Of(data).hex());
  }
  bool Has(const Context& ctx, absl::string_view data) {
    absl::StatusOr<content::Info> info = store_->GetInfo(ctx, Sha256Of(data));
    EXPECT_TRUE(info.ok() || absl::IsNotFound(info.status())) << info.status();
    return info.ok();
  }
  std::unique_ptr<content::Writer> MustOpen(const Context& ctx, const std::string& ref) {
    absl::StatusOr<std::unique_ptr<content::Writer>> w =
        store_->OpenWriter(ctx, content::WriterOptions{ref, 0, Digest()});
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  }
  // Reopens the store with its lease expiry loop running every `interval`.
  void ReopenWithExpiryLoop(absl::Duration interval) {
    store_.reset();
    StoreOptions options = Options();
    options.lease_expiry_interval = interval;
    absl::StatusOr<std::unique_ptr<LocalContentStore>> store = LocalContentStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  // Writes `data` under a new lease `lease` that expires `ttl` from now.
  void PutUnderExpiringLease(const std::string& lease, absl::string_view data,
                             absl::Duration ttl) {
    std::string expire =
        absl::FormatTime(absl::RFC3339_full, absl::Now() + ttl, absl::UTCTimeZone());
    ASSERT_TRUE(store_->Create(a_, lease, {{"containerd.io/gc.expire", expire}}).ok());
    ASSERT_TRUE(Put(Ctx(a_.ns, lease), data).ok());
  }
  // The next /content/delete events, polled for with a deadline.
  std::vector<std::string> WaitForDeletions() {
    std::vector<std::string> deleted;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (deleted.empty() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
      deleted = DeletedDigests();
    }
    return deleted;
  }
  std::vector<std::string> DeletedDigests() {
    std::vector<std::string> out;
    for (const auto& e : publisher_.Take()) {
      EXPECT_EQ(e.topic, "/content/delete");
      out.push_back(absl::StrCat(e.ns, " ", e.digest));
    }
    return out;
  }

  std::string root_;
  RecordingPublisher publisher_;
  std::unique_ptr<LocalContentStore> store_;
  const Context a_ = Ctx("ns-a", "");
  const Context b_ = Ctx("ns-b", "");
};

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  uint32_t x = 12345;
  for (char& c : s) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

TEST_F(LocalContentStoreTest, WriteCommitReadInfoUpdateDelete) {
  absl::Time before = absl::Now();
  ASSERT_TRUE(Put(a_, "hello world", {{"k", "v"}}).ok());
  Digest d = Sha256Of("hello world");
  absl::StatusOr<content::Info> info = store_->GetInfo(a_, d);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->digest, d);
  EXPECT_EQ(info->size, 11);
  EXPECT_EQ(info->labels, (Labels{{"k", "v"}}));
  EXPECT_GE(info->created_at, before);
  EXPECT_TRUE(fs::is_regular_file(BlobFile("hello world")));
  EXPECT_EQ(*content::ReadBlob(*store_, a_, d), "hello world");

  absl::StatusOr<content::Info> up =
      store_->Update(a_, content::Info{d, 0, {}, {}, {{"x", "1"}}}, {"labels.x"});
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->labels, (Labels{{"k", "v"}, {"x", "1"}}));
  up = store_->Update(a_, content::Info{d, 0, {}, {}, {}}, {"labels.k"});
  EXPECT_EQ(up->labels, (Labels{{"x", "1"}}));
  up = store_->Update(a_, content::Info{d, 0, {}, {}, {{"y", "2"}}}, {});
  EXPECT_EQ(up->labels, (Labels{{"y", "2"}}));
  EXPECT_EQ(store_->GetInfo(a_, d)->labels, (Labels{{"y", "2"}}));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Update(a_, content::Info{d, 0, {}, {}, {}}, {"size"}).status()));
  EXPECT_TRUE(absl::IsNotFound(
      store_->Update(a_, content::Info{Sha256Of("nope"), 0, {}, {}, {}}, {}).status()));

  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.blobs, 1);
  EXPECT_EQ(stats.bytes, 11);
  EXPECT_EQ(stats.ingests, 0);

  ASSERT_TRUE(store_->Delete(a_, d).ok());
  EXPECT_FALSE(fs::exists(BlobFile("hello world")));
  EXPECT_EQ(DeletedDigests(), std::vector<std::string>{"ns-a " + d.ToString()});
  EXPECT_TRUE(absl::IsNotFound(store_->Delete(a_, d)));
  EXPECT_TRUE(absl::IsNotFound(store_->OpenReader(a_, d).status()));
}

TEST_F(LocalContentStoreTest, WalkFilters) {
  ASSERT_TRUE(Put(a_, "one", {{"env", "prod"}}).ok());
  ASSERT_TRUE(Put(a_, "two", {{"env", "dev"}}).ok());
  ASSERT_TRUE(Put(a_, "three!").ok());
  auto walk = [&](std::vector<std::string> filters) {
    std::vector<std::string> seen;
    absl::Status st = store_->Walk(a_, filters, [&](const content::Info& info) {
      seen.push_back(info.digest.ToString());
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    std::sort(seen.begin(), seen.end());
    return seen;
  };
  EXPECT_EQ(walk({}).size(), 3u);
  EXPECT_EQ(walk({"labels.env==prod"}), std::vector<std::string>{Sha256Of("one").ToString()});
  EXPECT_EQ(walk({"labels.env"}).size(), 2u);
  EXPECT_EQ(walk({"size==6"}), std::vector<std::string>{Sha256Of("three!").ToString()});
  EXPECT_EQ(walk({absl::StrCat("digest==", Sha256Of("two").ToString())}),
            std::vector<std::string>{Sha256Of("two").ToString()});
  EXPECT_EQ(walk({"labels.env==prod", "size==6"}).size(), 2u);
  EXPECT_TRUE(walk({"labels.env==nothing"}).empty());

  auto noop = [](const content::Info&) { return absl::OkStatus(); };
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Walk(a_, {"labels.env=="}, noop)));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Walk(a_, {"==x"}, noop)));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->ListStatuses(a_, {"ref~="}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->List(a_, {"id=="}).status()));
  // fn's error stops the walk.
  int calls = 0;
  absl::Status st = store_->Walk(a_, {}, [&](const content::Info&) {
    ++calls;
    return absl::CancelledError("stop");
  });
  EXPECT_TRUE(absl::IsCancelled(st));
  EXPECT_EQ(calls, 1);
}

TEST_F(LocalContentStoreTest, NamespaceIsolation) {
  ASSERT_TRUE(Put(a_, "shared bytes").ok());
  Digest d = Sha256Of("shared bytes");
  EXPECT_TRUE(Has(a_, "shared bytes"));
  EXPECT_FALSE(Has(b_, "shared bytes"));
  EXPECT_TRUE(absl::IsNotFound(store_->OpenReader(b_, d).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Delete(b_, d)));
  int seen = 0;
  ASSERT_TRUE(store_
                  ->Walk(b_, {},
                         [&](const content::Info&) {
                           ++seen;
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(seen, 0);

  // Committing the same bytes in b makes them visible there; the file is shared.
  ASSERT_TRUE(Put(b_, "shared bytes").ok());
  EXPECT_TRUE(Has(b_, "shared bytes"));
  EXPECT_EQ(store_->Stats().blobs, 1);
  ASSERT_TRUE(store_->Delete(a_, d).ok());
  EXPECT_FALSE(Has(a_, "shared bytes"));
  EXPECT_TRUE(Has(b_, "shared bytes"));
  EXPECT_TRUE(fs::exists(BlobFile("shared bytes")));
  EXPECT_EQ(*content::ReadBlob(*store_, b_, d), "shared bytes");
  ASSERT_TRUE(store_->Delete(b_, d).ok());
  EXPECT_FALSE(fs::exists(BlobFile("shared bytes")));
  EXPECT_EQ(DeletedDigests(),
            (std::vector<std::string>{"ns-a " + d.ToString(), "ns-b " + d.ToString()}));

  // Ingests are per namespace too.
  auto wa = MustOpen(a_, "same-ref");
  auto wb = MustOpen(b_, "same-ref");
  ASSERT_TRUE(wa && wb);
  ASSERT_TRUE(wa->Write("aaa").ok());
  ASSERT_TRUE(wb->Write("bbbbb").ok());
  ASSERT_TRUE(wa->Commit(3, Sha256Of("aaa"), {}).ok());
  ASSERT_TRUE(wb->Commit(5, Sha256Of("bbbbb"), {}).ok());
  EXPECT_TRUE(Has(a_, "aaa"));
  EXPECT_FALSE(Has(a_, "bbbbb"));
  EXPECT_TRUE(Has(b_, "bbbbb"));
}

TEST_F(LocalContentStoreTest, BadNamespaceIsInvalidArgument) {
  Context bad = Ctx("bad/ns", "");
  EXPECT_TRUE(absl::IsInvalidArgument(store_->GetInfo(bad, Sha256Of("x")).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->OpenWriter(bad, content::WriterOptions{"r", 0, Digest()}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->OpenWriter(a_, content::WriterOptions{"", 0, Digest()}).status()));
}

TEST_F(LocalContentStoreTest, DigestMismatchKeepsIngestForRetry) {
  auto w = MustOpen(a_, "r1");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("hello").ok());
  absl::Status st = w->Commit(5, Sha256Of("other"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(st.message(), absl::StrCat("unexpected commit digest ", Sha256Of("hello").ToString(),
                                       ", expected ", Sha256Of("other").ToString()));
  EXPECT_FALSE(Has(a_, "hello"));
  EXPECT_FALSE(fs::exists(BlobFile("hello")));
  // The writer is released even on error; the ingest stays at its offset.
  EXPECT_FALSE(w->Write("x").ok());
  w.reset();
  absl::StatusOr<content::IngestStatus> status = store_->GetStatus(a_, "r1");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 5);
  w = MustOpen(a_, "r1");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->Status()->offset, 5);
  EXPECT_EQ(w->CurrentDigest(), Sha256Of("hello"));
  ASSERT_TRUE(w->Write(" world").ok());
  ASSERT_TRUE(w->Commit(11, Sha256Of("hello world"), {}).ok());
  EXPECT_TRUE(Has(a_, "hello world"));
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(a_, "r1").status()));
  EXPECT_EQ(store_->Stats().ingests, 0);
  EXPECT_TRUE(fs::is_empty(root_ + "/ingest"));
}

TEST_F(LocalContentStoreTest, SizeMismatchThenAbort) {
  auto w = MustOpen(a_, "r2");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("hello").ok());
  absl::Status st = w->Commit(6, Digest(), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(st.message(), "unexpected commit size 5, expected 6");
  EXPECT_FALSE(Has(a_, "hello"));
  ASSERT_EQ(store_->ListStatuses(a_, {})->size(), 1u);
  EXPECT_EQ(store_->ListStatuses(a_, {"ref==r2"})->size(), 1u);
  EXPECT_EQ(store_->ListStatuses(a_, {"ref~=^x"})->size(), 0u);
  ASSERT_TRUE(store_->Abort(a_, "r2").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(a_, "r2").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Abort(a_, "r2")));
  EXPECT_TRUE(fs::is_empty(root_ + "/ingest"));
  EXPECT_EQ(store_->Stats().blobs, 0);
}

TEST_F(LocalContentStoreTest, CommitUsesWriterOptionsWhenCommitOmitsThem) {
  absl::StatusOr<std::unique_ptr<content::Writer>> w =
      store_->OpenWriter(a_, content::WriterOptions{"r", 5, Sha256Of("hello")});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write("hellO").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition((*w)->Commit(0, Digest(), {})));
  ASSERT_TRUE(store_->Abort(a_, "r").ok());
}

TEST_F(LocalContentStoreTest, TruncateRestarts) {
  auto w = MustOpen(a_, "t");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("garbage").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(w->Truncate(3)));
  ASSERT_TRUE(w->Truncate(0).ok());
  EXPECT_EQ(w->Status()->offset, 0);
  ASSERT_TRUE(w->Write("good").ok());
  ASSERT_TRUE(w->Commit(4, Sha256Of("good"), {}).ok());
  EXPECT_EQ(*content::ReadBlob(*store_, a_, Sha256Of("good")), "good");
}

TEST_F(LocalContentStoreTest, LargeBlobInOddChunks) {
  std::string data = Pattern((5 << 20) + 12345);
  auto w = MustOpen(a_, "big");
  ASSERT_TRUE(w);
  size_t pos = 0;
  const size_t chunks[] = {7, 100000, 3 << 20, 1 << 20, 1, 65536};
  for (size_t i = 0; pos < data.size(); ++i) {
    size_t n = std::min(chunks[i % 6], data.size() - pos);
    ASSERT_TRUE(w->Write(absl::string_view(data).substr(pos, n)).ok());
    pos += n;
    ASSERT_EQ(w->Status()->offset, static_cast<int64_t>(pos));
    ASSERT_EQ(store_->GetStatus(a_, "big")->offset, static_cast<int64_t>(pos));
  }
  EXPECT_EQ(w->CurrentDigest(), Sha256Of(data));
  ASSERT_TRUE(w->Commit(static_cast<int64_t>(data.size()), Sha256Of(data), {}).ok());
  absl::StatusOr<std::string> back = content::ReadBlob(*store_, a_, Sha256Of(data));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == data);
}

// Not a benchmark, a smoke check that ingest runs at disk + sha256 speed: prints MB/s.
TEST_F(LocalContentStoreTest, IngestThroughput) {
  const std::string chunk = Pattern(1 << 20);
  const int chunks = 128;
  absl::Time start = absl::Now();
  auto w = MustOpen(a_, "throughput");
  ASSERT_TRUE(w);
  for (int i = 0; i < chunks; ++i) {
    ASSERT_TRUE(w->Write(chunk).ok());
  }
  Digest digest = w->CurrentDigest();
  absl::Time written = absl::Now();
  ASSERT_TRUE(w->Commit(int64_t{chunks} << 20, digest, {}).ok());
  absl::StatusOr<content::Info> info = store_->GetInfo(a_, digest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, int64_t{chunks} << 20);
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::cout << "ingest: " << chunks << " MiB in " << seconds << " s = " << chunks / seconds
            << " MiB/s (commit, mostly fsync: " << absl::ToDoubleSeconds(absl::Now() - written)
            << " s)\n";
}

TEST_F(LocalContentStoreTest, Sha512) {
  absl::StatusOr<std::unique_ptr<Digester>> d512 = Digester::Create("sha512");
  ASSERT_TRUE(d512.ok());
  (*d512)->Update("abc");
  Digest expected = (*d512)->Sum();
  // Opened without an expected digest (running sha256), committed against sha512.
  auto w = MustOpen(a_, "s");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("abc").ok());
  ASSERT_TRUE(w->Commit(3, expected, {}).ok());
  EXPECT_EQ(*content::ReadBlob(*store_, a_, expected), "abc");
  EXPECT_TRUE(fs::exists(absl::StrCat(root_, "/blobs/sha512/", expected.hex())));
}

TEST_F(LocalContentStoreTest, AlreadyExists) {
  ASSERT_TRUE(Put(a_, "dup").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(
      store_->OpenWriter(a_, content::WriterOptions{"x", 3, Sha256Of("dup")}).status()));
  auto w = MustOpen(a_, "y");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("dup").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(w->Commit(3, Sha256Of("dup"), {})));
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(a_, "y").status()));  // ingest removed
  EXPECT_TRUE(Has(a_, "dup"));
  EXPECT_TRUE(fs::is_empty(root_ + "/ingest"));
}

TEST_F(LocalContentStoreTest, ConcurrentWriterOnSameRefIsUnavailable) {
  auto w = MustOpen(a_, "locked");
  ASSERT_TRUE(w);
  absl::StatusOr<std::unique_ptr<content::Writer>> second =
      store_->OpenWriter(a_, content::WriterOptions{"locked", 0, Digest()});
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
  EXPECT_EQ(second.status().message(), "ref locked is locked by another writer");
  // A different namespace or ref is fine.
  EXPECT_TRUE(MustOpen(b_, "locked") != nullptr);
  // Close releases the ref; the ingest stays.
  ASSERT_TRUE(w->Write("abc").ok());
  ASSERT_TRUE(w->Close().ok());
  w = MustOpen(a_, "locked");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->Status()->offset, 3);
  // Destroying a writer releases it too.
  w.reset();
  EXPECT_TRUE(MustOpen(a_, "locked") != nullptr);

  // From many threads at once, exactly one wins.
  std::atomic<int> won{0};
  std::atomic<int> unavailable{0};
  std::vector<std::unique_ptr<content::Writer>> held(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto r = store_->OpenWriter(a_, content::WriterOptions{"race", 0, Digest()});
      if (r.ok()) {
        ++won;
        held[i] = std::move(*r);
      } else if (absl::IsUnavailable(r.status())) {
        ++unavailable;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(unavailable.load(), 7);
}

TEST_F(LocalContentStoreTest, AbortUnderOpenWriter) {
  auto w = MustOpen(a_, "ab");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("abc").ok());
  ASSERT_TRUE(store_->Abort(a_, "ab").ok());
  EXPECT_TRUE(absl::IsNotFound(w->Write("d")));
  EXPECT_FALSE(w->Commit(0, Digest(), {}).ok());
  auto w2 = MustOpen(a_, "ab");
  ASSERT_TRUE(w2);
  EXPECT_EQ(w2->Status()->offset, 0);
  w.reset();  // must not release w2's hold
  EXPECT_TRUE(absl::IsUnavailable(
      store_->OpenWriter(a_, content::WriterOptions{"ab", 0, Digest()}).status()));
}

TEST_F(LocalContentStoreTest, ReadPastEndIsOutOfRange) {
  ASSERT_TRUE(Put(a_, "0123456789").ok());
  absl::StatusOr<std::unique_ptr<content::Reader>> r =
      store_->OpenReader(a_, Sha256Of("0123456789"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Size(), 10);
  char buf[16];
  EXPECT_EQ(*(*r)->ReadAt(4, buf, 3), 3u);
  EXPECT_EQ(std::string(buf, 3), "456");
  EXPECT_EQ(*(*r)->ReadAt(8, buf, 16), 2u);
  EXPECT_EQ(*(*r)->ReadAt(10, buf, 16), 0u);
  EXPECT_TRUE(absl::IsOutOfRange((*r)->ReadAt(11, buf, 1).status()));
  // A reader keeps working after the blob is deleted.
  ASSERT_TRUE(store_->Delete(a_, Sha256Of("0123456789")).ok());
  EXPECT_EQ(*(*r)->ReadAt(0, buf, 2), 2u);
}

TEST_F(LocalContentStoreTest, LabelTooBig) {
  std::string big(4097, 'v');
  Labels labels{{"k", big}};
  auto w = MustOpen(a_, "lbl");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("x").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(w->Commit(1, Sha256Of("x"), labels)));
  EXPECT_TRUE(store_->GetStatus(a_, "lbl").ok());  // ingest kept
  ASSERT_TRUE(Put(a_, "x").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Update(a_, content::Info{Sha256Of("x"), 0, {}, {}, labels}, {}).status()));
  EXPECT_TRUE(store_
                  ->Update(a_, content::Info{Sha256Of("x"), 0, {}, {}, {{"k", big.substr(1 + 1)}}},
                           {})
                  .ok());  // 1 + 4095 = 4096 is fine
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Create(a_, "l1", labels).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Create("ns-big", labels)));
}

TEST_F(LocalContentStoreTest, UnknownLeaseInContextIsNotFound) {
  Context ctx = Ctx("ns-a", "nope");
  absl::StatusOr<std::unique_ptr<content::Writer>> w =
      store_->OpenWriter(ctx, content::WriterOptions{"r", 0, Digest()});
  EXPECT_TRUE(absl::IsNotFound(w.status()));
  EXPECT_EQ(w.status().message(), "lease nope not found");
}

TEST_F(LocalContentStoreTest, LeaseProtectsContentUntilDeleted) {
  ASSERT_TRUE(store_->Create(a_, "pull-1", {}).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(store_->Create(a_, "pull-1", {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Create(a_, "bad lease!", {}).status()));
  // ctr's own random ids (leases.WithRandomID) put '_' and '-' anywhere.
  EXPECT_TRUE(store_->Create(a_, "476399390-_Bu0", {}).ok());
  EXPECT_TRUE(store_->Delete(a_, "476399390-_Bu0", false).ok());
  Context leased = Ctx("ns-a", "pull-1");

  // While ingesting, the lease holds the ingest.
  auto w = MustOpen(leased, "layer");
  ASSERT_TRUE(w);
  absl::StatusOr<std::vector<leases::Resource>> res = store_->ListResources(a_, "pull-1");
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(*res, (std::vector<leases::Resource>{{"layer", "ingests"}}));
  ASSERT_TRUE(w->Write("leased").ok());
  ASSERT_TRUE(w->Commit(6, Sha256Of("leased"), {}).ok());
  res = store_->ListResources(a_, "pull-1");
  EXPECT_EQ(*res, (std::vector<leases::Resource>{{Sha256Of("leased").ToString(), "content"}}));

  ASSERT_TRUE(Put(a_, "unleased").ok());
  absl::StatusOr<GcResult> gc = store_->CollectGarbage();
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->blobs_removed, 1);
  EXPECT_TRUE(Has(a_, "leased"));
  EXPECT_FALSE(Has(a_, "unleased"));
  EXPECT_FALSE(fs::exists(BlobFile("unleased")));
  EXPECT_EQ(DeletedDigests(), std::vector<std::string>{"ns-a " + Sha256Of("unleased").ToString()});

  // Deleting the lease collects what it alone held.
  EXPECT_TRUE(absl::IsNotFound(store_->Delete(a_, "nope", true)));
  ASSERT_TRUE(store_->Delete(a_, "pull-1", true).ok());
  EXPECT_FALSE(Has(a_, "leased"));
  EXPECT_FALSE(fs::exists(BlobFile("leased")));
  EXPECT_EQ(DeletedDigests(), std::vector<std::string>{"ns-a " + Sha256Of("leased").ToString()});
  EXPECT_TRUE(store_->List(a_, {})->empty());
}

TEST_F(LocalContentStoreTest, DeletingLeaseKeepsWhatOthersHold) {
  ASSERT_TRUE(store_->Create(a_, "l1", {}).ok());
  ASSERT_TRUE(store_->Create(a_, "l2", {}).ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "l1"), "both").ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "l1"), "only-l1").ok());
  // Writing an existing blob under another lease adds it to that lease.
  ASSERT_TRUE(Put(Ctx("ns-a", "l2"), "both").ok());
  // A blob with no lease survives a lease release (only a full pass takes it).
  ASSERT_TRUE(Put(a_, "nobody").ok());
  // And so does the same blob in another namespace.
  ASSERT_TRUE(Put(b_, "only-l1").ok());
  ASSERT_TRUE(store_->Delete(a_, "l1", true).ok());
  EXPECT_TRUE(Has(a_, "both"));
  EXPECT_FALSE(Has(a_, "only-l1"));
  EXPECT_TRUE(Has(b_, "only-l1"));
  EXPECT_TRUE(fs::exists(BlobFile("only-l1")));
  EXPECT_TRUE(Has(a_, "nobody"));
}

TEST_F(LocalContentStoreTest, LeaseCollectsReferencedChildren) {
  ASSERT_TRUE(store_->Create(a_, "l", {}).ok());
  ASSERT_TRUE(Put(a_, "child").ok());
  ASSERT_TRUE(Put(a_, "kept-child").ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "l"), "parent",
                  {{"containerd.io/gc.ref.content.l.0", Sha256Of("child").ToString()},
                   {"containerd.io/gc.ref.content.l.1", Sha256Of("kept-child").ToString()}})
                  .ok());
  ASSERT_TRUE(Put(a_, "other-parent",
                  {{"containerd.io/gc.ref.content.m", Sha256Of("kept-child").ToString()}})
                  .ok());
  ASSERT_TRUE(store_->Delete(a_, "l", false).ok());
  EXPECT_FALSE(Has(a_, "parent"));
  EXPECT_FALSE(Has(a_, "child"));
  EXPECT_TRUE(Has(a_, "kept-child"));
  EXPECT_TRUE(Has(a_, "other-parent"));
}

TEST_F(LocalContentStoreTest, LeaseResources) {
  ASSERT_TRUE(store_->Create(a_, "l", {{"app", "x"}}).ok());
  ASSERT_TRUE(store_->Create(a_, "m", {}).ok());
  EXPECT_TRUE(absl::IsNotFound(
      store_->AddResource(a_, "missing", leases::Resource{"snap", "snapshots/overlayfs"})));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->AddResource(a_, "l", leases::Resource{"not-a-digest", "content"})));
  ASSERT_TRUE(store_->AddResource(a_, "l", leases::Resource{"snap-1", "snapshots/overlayfs"}).ok());
  ASSERT_TRUE(store_->AddResource(a_, "l", leases::Resource{"img", "images"}).ok());
  ASSERT_TRUE(Put(a_, "held").ok());
  ASSERT_TRUE(
      store_->AddResource(a_, "l", leases::Resource{Sha256Of("held").ToString(), "content"}).ok());
  EXPECT_EQ(store_->ListResources(a_, "l")->size(), 3u);
  EXPECT_TRUE(absl::IsNotFound(store_->ListResources(a_, "zz").status()));
  EXPECT_TRUE(store_->ListResources(b_, "l").status().code() == absl::StatusCode::kNotFound);

  EXPECT_EQ(store_->CollectGarbage()->blobs_removed, 0);
  EXPECT_TRUE(Has(a_, "held"));
  // Removing the resource releases the blob.
  ASSERT_TRUE(
      store_->DeleteResource(a_, "l", leases::Resource{Sha256Of("held").ToString(), "content"})
          .ok());
  EXPECT_FALSE(Has(a_, "held"));
  EXPECT_EQ(store_->ListResources(a_, "l")->size(), 2u);

  absl::StatusOr<std::vector<leases::Lease>> list = store_->List(a_, {"labels.app==x"});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "l");
  EXPECT_EQ((*list)[0].labels, (Labels{{"app", "x"}}));
  EXPECT_EQ(store_->List(a_, {"id==m"})->size(), 1u);
  EXPECT_EQ(store_->List(a_, {})->size(), 2u);
  EXPECT_TRUE(store_->List(b_, {})->empty());
}

TEST_F(LocalContentStoreTest, GcRootAndRefLabelsKeepBlobs) {
  ASSERT_TRUE(Put(a_, "grandchild").ok());
  ASSERT_TRUE(
      Put(a_, "child", {{"containerd.io/gc.ref.content", Sha256Of("grandchild").ToString()}}).ok());
  ASSERT_TRUE(Put(a_, "root", {{"containerd.io/gc.root", "2024-01-01T00:00:00Z"},
                               {"containerd.io/gc.ref.content.config",
                                Sha256Of("child").ToString()}})
                  .ok());
  ASSERT_TRUE(Put(a_, "orphan").ok());
  ASSERT_TRUE(Put(a_, "orphan-child").ok());
  ASSERT_TRUE(Put(a_, "orphan-parent",
                  {{"containerd.io/gc.ref.content.0", Sha256Of("orphan-child").ToString()}})
                  .ok());
  // References do not cross namespaces.
  ASSERT_TRUE(Put(b_, "b-only").ok());
  ASSERT_TRUE(Put(b_, "b-root", {{"containerd.io/gc.root", "x"},
                                 {"containerd.io/gc.ref.content", Sha256Of("orphan").ToString()}})
                  .ok());
  absl::StatusOr<GcResult> gc = store_->CollectGarbage();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->blobs_removed, 4);
  EXPECT_TRUE(Has(a_, "root"));
  EXPECT_TRUE(Has(a_, "child"));
  EXPECT_TRUE(Has(a_, "grandchild"));
  EXPECT_FALSE(Has(a_, "orphan"));
  EXPECT_FALSE(Has(a_, "orphan-child"));
  EXPECT_FALSE(Has(a_, "orphan-parent"));
  EXPECT_TRUE(Has(b_, "b-root"));
  EXPECT_FALSE(Has(b_, "b-only"));
  EXPECT_EQ(DeletedDigests().size(), 4u);
  EXPECT_EQ(store_->Stats().blobs, 4);
  // Removing the root label lets the whole tree go.
  ASSERT_TRUE(
      store_->Update(a_, content::Info{Sha256Of("root"), 0, {}, {}, {}}, {"labels.containerd.io/gc.root"})
          .ok());
  EXPECT_EQ(store_->CollectGarbage()->blobs_removed, 3);
  EXPECT_EQ(store_->Stats().blobs, 1);
}

// containerd using contentd as its proxy content store sends no namespace header: it keeps its
// references in its own metadata, and its collection walks the store and deletes what that
// metadata does not name, stopping at the first error. So such a caller is shown only what
// berth does not hold, and its Delete of what berth holds is refused (FailedPrecondition,
// naming the holder), changing nothing.
TEST_F(LocalContentStoreTest, ProxyConsumerCannotDeleteWhatBerthHolds) {
  Context proxy = a_;
  proxy.proxy_consumer = true;
  ASSERT_TRUE(store_->Create(a_, "image", {}).ok());
  ASSERT_TRUE(Put(a_, "layer").ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "image"), "manifest",
                  {{"containerd.io/gc.ref.content.l.0", Sha256Of("layer").ToString()}})
                  .ok());
  ASSERT_TRUE(Put(a_, "rooted", {{"containerd.io/gc.root", "x"}}).ok());
  ASSERT_TRUE(Put(a_, "free").ok());
  DeletedDigests();

  absl::Status st = store_->Delete(proxy, Sha256Of("manifest"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "lease \"image\"")) << st;
  st = store_->Delete(proxy, Sha256Of("layer"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), Sha256Of("manifest").ToString())) << st;
  st = store_->Delete(proxy, Sha256Of("rooted"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "containerd.io/gc.root")) << st;
  EXPECT_TRUE(Has(a_, "manifest"));
  EXPECT_TRUE(Has(a_, "layer"));
  EXPECT_TRUE(Has(a_, "rooted"));
  EXPECT_TRUE(fs::exists(BlobFile("layer")));
  EXPECT_TRUE(DeletedDigests().empty());

  // Its Walk lists only what berth does not hold; a Walk with the header lists everything.
  auto walk = [&](const Context& ctx) {
    std::vector<std::string> seen;
    EXPECT_TRUE(store_
                    ->Walk(ctx, {},
                           [&](const content::Info& info) {
                             seen.push_back(info.digest.ToString());
                             return absl::OkStatus();
                           })
                    .ok());
    return seen;
  };
  EXPECT_EQ(walk(proxy), std::vector<std::string>{Sha256Of("free").ToString()});
  EXPECT_EQ(walk(a_).size(), 4u);

  // An ingest a lease holds is neither listed to it nor aborted by it.
  auto w = MustOpen(Ctx("ns-a", "image"), "pulling");
  ASSERT_TRUE(w);
  w.reset();
  EXPECT_TRUE(store_->ListStatuses(proxy, {})->empty());
  EXPECT_EQ(store_->ListStatuses(a_, {})->size(), 1u);
  EXPECT_EQ(store_->Abort(proxy, "pulling").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ListStatuses(a_, {})->size(), 1u);

  // What berth does not hold it deletes; once berth lets go, that too.
  EXPECT_TRUE(store_->Delete(proxy, Sha256Of("free")).ok());
  EXPECT_FALSE(Has(a_, "free"));
  ASSERT_TRUE(store_
                  ->Update(a_, content::Info{Sha256Of("rooted"), 0, {}, {}, {}},
                           {"labels.containerd.io/gc.root"})
                  .ok());
  EXPECT_TRUE(store_->Delete(proxy, Sha256Of("rooted")).ok());
}

// What a proxy consumer wrote, or asked about (containerd's shared content policy asks Info of
// a blob it then records without writing it), berth's collections keep: a lease release and a
// full pass. It goes when the proxy consumer deletes it.
TEST_F(LocalContentStoreTest, WhatAProxyConsumerUsesSurvivesBerthCollections) {
  Context proxy = a_;
  proxy.proxy_consumer = true;
  ASSERT_TRUE(store_->Create(a_, "image", {}).ok());
  ASSERT_TRUE(Put(proxy, "proxy-written").ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "image"), "shared").ok());
  ASSERT_TRUE(store_->GetInfo(proxy, Sha256Of("shared")).ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "image"), "berth-only").ok());
  ASSERT_TRUE(Put(a_, "nobody").ok());
  // The same blob written in another namespace is not claimed there.
  ASSERT_TRUE(Put(b_, "proxy-written").ok());

  ASSERT_TRUE(store_->Delete(a_, "image", true).ok());
  EXPECT_TRUE(Has(a_, "shared"));
  EXPECT_FALSE(Has(a_, "berth-only"));
  Reopen();  // the claims are stored
  absl::StatusOr<GcResult> gc = store_->CollectGarbage();
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->blobs_removed, 2);
  EXPECT_TRUE(Has(a_, "proxy-written"));
  EXPECT_TRUE(Has(a_, "shared"));
  EXPECT_FALSE(Has(a_, "nobody"));
  EXPECT_FALSE(Has(b_, "proxy-written"));

  ASSERT_TRUE(store_->Delete(proxy, Sha256Of("proxy-written")).ok());
  ASSERT_TRUE(store_->Delete(proxy, Sha256Of("shared")).ok());
  EXPECT_EQ(store_->Stats().blobs, 0);
  // A blob written again after its delete is not claimed any more unless asked for again.
  ASSERT_TRUE(Put(a_, "shared").ok());
  EXPECT_EQ(store_->CollectGarbage()->blobs_removed, 1);
}

TEST_F(LocalContentStoreTest, ExpiredLeaseIsReleased) {
  ASSERT_TRUE(store_->Create(a_, "old", {{"containerd.io/gc.expire", "2000-01-01T00:00:00Z"}}).ok());
  ASSERT_TRUE(
      store_->Create(a_, "young", {{"containerd.io/gc.expire",
                                    absl::FormatTime(absl::RFC3339_full,
                                                     absl::Now() + absl::Hours(1),
                                                     absl::UTCTimeZone())}})
          .ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "old"), "old-data").ok());
  ASSERT_TRUE(Put(Ctx("ns-a", "young"), "young-data").ok());
  absl::StatusOr<GcResult> gc = store_->CollectGarbage();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->leases_expired, 1);
  EXPECT_EQ(gc->blobs_removed, 1);
  EXPECT_FALSE(Has(a_, "old-data"));
  EXPECT_TRUE(Has(a_, "young-data"));
  ASSERT_EQ(store_->List(a_, {})->size(), 1u);
}

TEST_F(LocalContentStoreTest, BackgroundExpiry) {
  ReopenWithExpiryLoop(absl::Milliseconds(20));
  PutUnderExpiringLease("soon", "short-lived", absl::Milliseconds(200));
  // The event is published just after the blob goes.
  EXPECT_EQ(WaitForDeletions(),
            std::vector<std::string>{"ns-a " + Sha256Of("short-lived").ToString()});
  EXPECT_FALSE(Has(a_, "short-lived"));
  EXPECT_TRUE(store_->List(a_, {})->empty());
}

TEST_F(LocalContentStoreTest, IngestsAndGc) {
  ASSERT_TRUE(store_->Create(a_, "l", {}).ok());
  auto leased = MustOpen(Ctx("ns-a", "l"), "leased-ingest");
  ASSERT_TRUE(leased);
  ASSERT_TRUE(leased->Write("abc").ok());
  ASSERT_TRUE(leased->Close().ok());
  auto open = MustOpen(a_, "open-ingest");
  ASSERT_TRUE(open);
  ASSERT_TRUE(MustOpen(a_, "fresh-ingest") != nullptr);
  // A full pass keeps recent and leased ingests.
  EXPECT_EQ(store_->CollectGarbage()->ingests_removed, 0);
  EXPECT_EQ(store_->Stats().ingests, 3);
  // Deleting the lease takes its ingest.
  ASSERT_TRUE(store_->Delete(a_, "l", true).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(a_, "leased-ingest").status()));
  EXPECT_EQ(store_->Stats().ingests, 2);

  // Stale unleased ingests go in a full pass, unless a writer holds them.
  open.reset();  // writers never outlive their store
  store_.reset();
  StoreOptions options = Options();
  options.ingest_expiry = absl::ZeroDuration();
  store_ = std::move(*LocalContentStore::Open(options));
  auto held = MustOpen(a_, "open-ingest");
  ASSERT_TRUE(held);
  absl::StatusOr<GcResult> gc = store_->CollectGarbage();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->ingests_removed, 1);
  EXPECT_TRUE(store_->GetStatus(a_, "open-ingest").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(a_, "fresh-ingest").status()));
  held.reset();
}

TEST_F(LocalContentStoreTest, ResumeAfterReopen) {
  std::string data = Pattern(3 << 20);
  auto w = MustOpen(a_, "resume");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write(absl::string_view(data).substr(0, 1 << 20)).ok());
  ASSERT_TRUE(w->Close().ok());
  w.reset();
  Reopen();
  absl::StatusOr<content::IngestStatus> st = store_->GetStatus(a_, "resume");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->offset, 1 << 20);
  w = MustOpen(a_, "resume");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->Status()->offset, 1 << 20);
  EXPECT_EQ(w->CurrentDigest(), Sha256Of(absl::string_view(data).substr(0, 1 << 20)));
  ASSERT_TRUE(w->Write(absl::string_view(data).substr(1 << 20)).ok());
  ASSERT_TRUE(w->Commit(static_cast<int64_t>(data.size()), Sha256Of(data), {}).ok());
  EXPECT_TRUE(*content::ReadBlob(*store_, a_, Sha256Of(data)) == data);
}

// A child process opens the store, writes part of a blob and dies without closing anything
// (by _exit, or by SIGKILL); the parent reopens the store and finishes the ingest.
void CrashingChildWrites(const std::string& root, const std::string& data, size_t upto,
                         bool sigkill) {
  StoreOptions options;
  options.root = root;
  options.lease_expiry_interval = absl::ZeroDuration();
  auto store = LocalContentStore::Open(options);
  if (!store.ok()) {
    _exit(2);
  }
  auto w = (*store)->OpenWriter(Ctx("ns-a", ""), content::WriterOptions{"crash", 0, Digest()});
  if (!w.ok()) {
    _exit(3);
  }
  for (size_t pos = 0; pos < upto; pos += 4096) {
    if (!(*w)->Write(absl::string_view(data).substr(pos, std::min<size_t>(4096, upto - pos))).ok()) {
      _exit(4);
    }
  }
  if (sigkill) {
    kill(getpid(), SIGKILL);
  }
  _exit(0);
}

class CrashTest : public LocalContentStoreTest, public ::testing::WithParamInterface<bool> {};

TEST_P(CrashTest, ResumeAfterChildDies) {
  store_.reset();  // the child takes the store's lock
  std::string data = Pattern((4 << 20) + 777);
  size_t upto = (2 << 20) + 5000;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    CrashingChildWrites(root_, data, upto, GetParam());
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (GetParam()) {
    ASSERT_TRUE(WIFSIGNALED(status));
  } else {
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
  }
  Reopen();
  absl::StatusOr<content::IngestStatus> st = store_->GetStatus(a_, "crash");
  ASSERT_TRUE(st.ok()) << st.status();
  // Every write the child saw succeed survived it.
  EXPECT_EQ(st->offset, static_cast<int64_t>(upto));
  auto w = MustOpen(a_, "crash");
  ASSERT_TRUE(w);
  int64_t offset = w->Status()->offset;
  EXPECT_EQ(offset, st->offset);
  EXPECT_EQ(w->CurrentDigest(), Sha256Of(absl::string_view(data).substr(0, offset)));
  ASSERT_TRUE(w->Write(absl::string_view(data).substr(offset)).ok());
  ASSERT_TRUE(w->Commit(static_cast<int64_t>(data.size()), Sha256Of(data), {}).ok());
  EXPECT_TRUE(*content::ReadBlob(*store_, a_, Sha256Of(data)) == data);
}

INSTANTIATE_TEST_SUITE_P(ExitOrKill, CrashTest, ::testing::Bool());

TEST_F(LocalContentStoreTest, OpenRecoversFromCrashLeftovers) {
  ASSERT_TRUE(Put(a_, "kept").ok());
  auto w = MustOpen(a_, "ingest-without-dir");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("abc").ok());
  ASSERT_TRUE(w->Close().ok());
  w.reset();
  absl::StatusOr<content::IngestStatus> st = store_->GetStatus(a_, "ingest-without-dir");
  ASSERT_TRUE(st.ok());
  store_.reset();

  // A blob renamed into place whose metadata never committed, a half-written temp file, an
  // ingest directory no row owns, and an ingest row whose directory vanished.
  std::string orphan = BlobFile("orphan");
  { std::ofstream(orphan) << "orphan"; }
  std::string temp = root_ + "/blobs/sha256/.tmp-123";
  { std::ofstream(temp) << "partial"; }
  fs::create_directories(root_ + "/ingest/deadbeef");
  { std::ofstream(root_ + "/ingest/deadbeef/data") << "junk"; }
  std::vector<fs::path> ingest_dirs;
  for (const auto& e : fs::directory_iterator(root_ + "/ingest")) {
    if (e.path().filename() != "deadbeef") {
      ingest_dirs.push_back(e.path());
    }
  }
  ASSERT_EQ(ingest_dirs.size(), 1u);
  fs::remove_all(ingest_dirs[0]);

  Reopen();
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_FALSE(fs::exists(root_ + "/ingest/deadbeef"));
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(a_, "ingest-without-dir").status()));
  EXPECT_TRUE(Has(a_, "kept"));
  EXPECT_TRUE(fs::exists(BlobFile("kept")));
  EXPECT_EQ(store_->Stats().blobs, 1);
  EXPECT_EQ(store_->Stats().ingests, 0);
}

// containerd's GC semantics as contentd applies them: the background loop only releases expired
// leases (and what they alone held); a blob with no lease and no label, as containerd's proxy
// clients write, is left to an explicit full pass, which does collect it.
TEST_F(LocalContentStoreTest, UnleasedUnlabelledBlobSurvivesExpiryLoop) {
  ReopenWithExpiryLoop(absl::Milliseconds(10));
  ASSERT_TRUE(Put(a_, "unreferenced").ok());
  // Sentinels: blobs under leases that expire soon. Each one collected is a pass of the loop
  // over a store holding the unreferenced blob, and the only blob that pass removed.
  for (const char* sentinel : {"sentinel-1", "sentinel-2"}) {
    PutUnderExpiringLease(sentinel, sentinel, absl::Milliseconds(100));
    ASSERT_EQ(WaitForDeletions(),
              std::vector<std::string>{"ns-a " + Sha256Of(sentinel).ToString()});
  }
  EXPECT_TRUE(Has(a_, "unreferenced"));
  EXPECT_TRUE(fs::exists(BlobFile("unreferenced")));

  // A full pass is what collects it.
  absl::StatusOr<GcResult> gc = store_->CollectGarbage();
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->blobs_removed, 1);
  EXPECT_FALSE(Has(a_, "unreferenced"));
  EXPECT_FALSE(fs::exists(BlobFile("unreferenced")));
}

// Two writers (different refs) commit the same bytes at the same moment: one wins, the other
// gets AlreadyExists, the blob is whole and no temporary file is left behind.
TEST_F(LocalContentStoreTest, TwoWritersCommitSameDigestAtOnce) {
  for (int round = 0; round < 20; ++round) {
    const std::string data = absl::StrCat(Pattern(64 << 10), round);
    const Digest digest = Sha256Of(data);
    std::unique_ptr<content::Writer> writers[2] = {MustOpen(a_, absl::StrCat("twin-a-", round)),
                                                   MustOpen(a_, absl::StrCat("twin-b-", round))};
    ASSERT_TRUE(writers[0] && writers[1]);
    for (auto& w : writers) {
      ASSERT_TRUE(w->Write(data).ok());
    }
    absl::Status results[2];
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        ++ready;
        while (ready.load() < 2) {
        }
        results[i] = writers[i]->Commit(static_cast<int64_t>(data.size()), digest, {});
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    int ok = 0;
    int exists = 0;
    for (const absl::Status& st : results) {
      ok += st.ok() ? 1 : 0;
      exists += absl::IsAlreadyExists(st) ? 1 : 0;
    }
    EXPECT_EQ(ok, 1) << results[0] << " / " << results[1];
    EXPECT_EQ(exists, 1) << results[0] << " / " << results[1];
    absl::StatusOr<std::string> back = content::ReadBlob(*store_, a_, digest);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == data) << "round " << round << ": the blob is not what was written";
    EXPECT_TRUE(fs::is_empty(root_ + "/ingest")) << "round " << round;
  }
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(root_ + "/blobs/sha256")) {
    EXPECT_EQ(entry.path().filename().string().size(), 64u) << entry.path();
    ++files;
  }
  EXPECT_EQ(files, 20u);  // one file per digest, no temporary files
  EXPECT_EQ(store_->Stats().blobs, 20);
  EXPECT_EQ(store_->Stats().ingests, 0);
}

// Commits at once are group-committed: blobs in two namespaces (the same bytes in each), each
// under its namespace's lease, committed from 16 threads together, all land, whole, held by
// their leases, one file per digest, no ingest left.
TEST_F(LocalContentStoreTest, ManyCommitsAtOnceAllLand) {
  constexpr int kBlobs = 8;
  ASSERT_TRUE(store_->Create(a_, "la", {}).ok());
  ASSERT_TRUE(store_->Create(b_, "lb", {}).ok());
  const Context ctxs[2] = {Ctx("ns-a", "la"), Ctx("ns-b", "lb")};
  std::vector<std::string> data;
  for (int i = 0; i < kBlobs; ++i) {
    data.push_back(absl::StrCat(Pattern((16 << 10) + i), "blob ", i));
  }
  std::vector<std::unique_ptr<content::Writer>> writers;
  for (const Context& ctx : ctxs) {
    for (int i = 0; i < kBlobs; ++i) {
      writers.push_back(MustOpen(ctx, absl::StrCat("many-", i)));
      ASSERT_TRUE(writers.back() && writers.back()->Write(data[i]).ok());
    }
  }
  std::vector<absl::Status> results(writers.size());
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (size_t w = 0; w < writers.size(); ++w) {
    threads.emplace_back([&, w] {
      ++ready;
      while (ready.load() < static_cast<int>(writers.size())) {
      }
      const std::string& bytes = data[w % kBlobs];
      results[w] = writers[w]->Commit(static_cast<int64_t>(bytes.size()), Sha256Of(bytes), {});
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (size_t w = 0; w < writers.size(); ++w) {
    EXPECT_TRUE(results[w].ok()) << "writer " << w << ": " << results[w];
  }
  for (const Context& ctx : ctxs) {
    for (int i = 0; i < kBlobs; ++i) {
      absl::StatusOr<std::string> back = content::ReadBlob(*store_, ctx, Sha256Of(data[i]));
      ASSERT_TRUE(back.ok()) << ctx.ns << " blob " << i << ": " << back.status();
      EXPECT_TRUE(*back == data[i]) << ctx.ns << " blob " << i;
    }
    absl::StatusOr<std::vector<leases::Resource>> held = store_->ListResources(ctx, ctx.lease);
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_EQ(held->size(), static_cast<size_t>(kBlobs)) << ctx.ns;
  }
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(root_ + "/blobs/sha256")) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, static_cast<size_t>(kBlobs));
  EXPECT_TRUE(fs::is_empty(root_ + "/ingest"));
}

// A writer under a lease whose commit finds the blob already there must record the blob under
// the lease; if that cannot be recorded, Commit fails (as OpenWriter does) rather than leave
// the blob unprotected. The failure is injected with a trigger on lease_resources.
TEST_F(LocalContentStoreTest, LeaseResourceThatCannotBeRecordedFailsCommit) {
  ASSERT_TRUE(Put(a_, "shared").ok());
  ASSERT_TRUE(store_->Create(a_, "l", {}).ok());
  auto w = MustOpen(Ctx("ns-a", "l"), "leased-dup");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("shared").ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((root_ + "/metadata.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TRIGGER no_content_leases BEFORE INSERT ON lease_resources "
                         "WHEN NEW.type = 'content' BEGIN SELECT RAISE(ABORT, 'injected'); END",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  absl::Status st = w->Commit(6, Sha256Of("shared"), {});
  // sqlite reports a trigger's RAISE as a constraint failure (AlreadyExists): what matters is
  // that the injected error is what Commit returns, not a plain "already exists".
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(absl::StrContains(st.message(), "injected")) << st;
  // The ingest is kept (the lease still holds it), and nothing was half recorded.
  EXPECT_TRUE(store_->GetStatus(a_, "leased-dup").ok());
  absl::StatusOr<std::vector<leases::Resource>> held = store_->ListResources(a_, "l");
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].type, "ingests");
}

// Stats() are counters moved with each commit and delete; they must equal what the rows say,
// including blobs shared by namespaces, across a reopen (where they are counted afresh).
TEST_F(LocalContentStoreTest, StatsFollowCommitsDeletesAndGc) {
  ASSERT_TRUE(Put(a_, "one").ok());
  ASSERT_TRUE(Put(b_, "one").ok());  // same blob in another namespace: one file
  ASSERT_TRUE(Put(a_, "three").ok());
  auto expect = [&](int64_t blobs, int64_t bytes) {
    StoreStats stats = store_->Stats();
    EXPECT_EQ(stats.blobs, blobs);
    EXPECT_EQ(stats.bytes, bytes);
  };
  expect(2, 8);
  ASSERT_TRUE(store_->Delete(a_, Sha256Of("one")).ok());
  expect(2, 8);  // ns-b still has it
  ASSERT_TRUE(store_->Delete(b_, Sha256Of("one")).ok());
  expect(1, 5);
  EXPECT_TRUE(absl::IsNotFound(store_->Delete(b_, Sha256Of("one"))));
  expect(1, 5);
  ASSERT_TRUE(Put(a_, "fourth").ok());
  ASSERT_EQ(store_->CollectGarbage()->blobs_removed, 2);
  expect(0, 0);
  ASSERT_TRUE(Put(b_, "after").ok());
  Reopen();
  expect(1, 5);
}

// A ref held by a writer that lets go a moment later is waited for (containerd's store retries
// for about a second), not refused.
TEST_F(LocalContentStoreTest, OpenWriterWaitsForARefReleasedSoon) {
  auto w = MustOpen(a_, "soon");
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Write("abc").ok());
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(w->Close().ok());
  });
  absl::StatusOr<std::unique_ptr<content::Writer>> second =
      store_->OpenWriter(a_, content::WriterOptions{"soon", 0, Digest()});
  closer.join();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->Status()->offset, 3);
}

TEST_F(LocalContentStoreTest, SecondOpenOfTheSameRootFails) {
  absl::StatusOr<std::unique_ptr<LocalContentStore>> again = LocalContentStore::Open(Options());
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
}

TEST_F(LocalContentStoreTest, Namespaces) {
  ASSERT_TRUE(Put(a_, "x").ok());  // registers ns-a implicitly
  ASSERT_TRUE(store_->Get("ns-a").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(store_->Create("ns-a", {})));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Create("-bad", {})));
  ASSERT_TRUE(store_->Create("ns-c", {{"a", "1"}, {"b", "2"}}).ok());
  EXPECT_EQ(store_->Get("ns-c")->labels, (Labels{{"a", "1"}, {"b", "2"}}));
  absl::StatusOr<namespaces::Namespace> up =
      store_->Update(namespaces::Namespace{"ns-c", {{"a", "9"}}}, {"labels.a", "labels.b"});
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->labels, (Labels{{"a", "9"}}));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Update(namespaces::Namespace{"ns-c", {}}, {"name"}).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Update(namespaces::Namespace{"ns-z", {}}, {}).status()));
  absl::StatusOr<std::vector<namespaces::Namespace>> all = store_->List();
  ASSERT_TRUE(all.ok());
  std::vector<std::string> names;
  for (const auto& ns : *all) {
    names.push_back(ns.name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"ns-a", "ns-c"}));

  EXPECT_TRUE(absl::IsFailedPrecondition(store_->Delete("ns-a")));
  ASSERT_TRUE(store_->Delete(a_, Sha256Of("x")).ok());
  ASSERT_TRUE(store_->Create(a_, "lease", {}).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->Delete("ns-a")));
  ASSERT_TRUE(store_->Delete(a_, "lease", true).ok());
  ASSERT_TRUE(MustOpen(a_, "ingest") != nullptr);
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->Delete("ns-a")));
  ASSERT_TRUE(store_->Abort(a_, "ingest").ok());
  EXPECT_TRUE(store_->Delete("ns-a").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Delete("ns-a")));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("ns-a").status()));
}

}  // namespace
}  // namespace berth::contentd
