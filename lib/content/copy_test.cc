// content::Copy, BlobSource and WriterSink against MemoryContentStore: a fresh copy, a resume
// that skips what the ingest holds, a blob already there (nothing read), the failures that abort
// the ingest and those that keep it for a resume, and a caller that goes away.

#include "lib/content/copy.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/content/blob_stream.h"
#include "lib/content/memory_content_store.h"

namespace berth::content {
namespace {

using ::testing::HasSubstr;

// A source that fails the test if anything reads it.
class UntouchableSource : public ByteSource {
 public:
  absl::StatusOr<size_t> Read(char*, size_t) override {
    ADD_FAILURE() << "the source was read";
    return absl::InternalError("read");
  }
};

// A StringSource that counts what it was asked to skip and to read.
class CountingSource : public StringSource {
 public:
  using StringSource::StringSource;
  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    absl::StatusOr<size_t> n = StringSource::Read(buf, size);
    if (n.ok()) {
      read += static_cast<int64_t>(*n);
    }
    return n;
  }
  int64_t read = 0;
};

class CopyTest : public ::testing::Test {
 protected:
  CopyTest() {
    for (int i = 0; i < 300000; ++i) {
      data_ += absl::StrCat(i, ";");
    }
    desc_.digest = Sha256Of(data_);
    desc_.size = static_cast<int64_t>(data_.size());
  }

  // Writes the first `n` bytes of data_ into ingest `ref` and leaves it open for a resume.
  void StartIngest(const std::string& ref, size_t n) {
    WriterOptions opts;
    opts.ref = ref;
    auto writer = store_->OpenWriter(ctx_, opts);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Write(absl::string_view(data_).substr(0, n)).ok());
    ASSERT_TRUE((*writer)->Close().ok());
  }

  std::string Stored(const Digest& digest) {
    absl::StatusOr<std::string> blob = ReadBlob(*store_, ctx_, digest);
    EXPECT_TRUE(blob.ok()) << blob.status();
    return blob.ok() ? *blob : "";
  }

  Context ctx_{"default", "", absl::InfiniteFuture(), nullptr};
  std::unique_ptr<ContentStore> store_ = NewMemoryContentStore();
  std::string data_;
  oci::Descriptor desc_;
};

TEST_F(CopyTest, CopiesAndLabels) {
  StringSource source(data_);
  CopyOptions options;
  options.labels = {{"a", "1"}};
  int64_t last_progress = 0;
  options.progress = [&](int64_t offset) { last_progress = offset; };
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", source, desc_, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->digest, desc_.digest);
  EXPECT_EQ(result->size, desc_.size);
  EXPECT_EQ(result->resumed_from, 0);
  EXPECT_FALSE(result->already_existed);
  EXPECT_EQ(last_progress, desc_.size);
  EXPECT_EQ(Stored(desc_.digest), data_);
  EXPECT_EQ(store_->GetInfo(ctx_, desc_.digest)->labels.at("a"), "1");
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(ctx_, "ref-1").status()));
}

TEST_F(CopyTest, UnknownDigestAndSize) {
  StringSource source(data_);
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", source, oci::Descriptor{});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->digest, desc_.digest);
  EXPECT_EQ(result->size, desc_.size);
}

TEST_F(CopyTest, ResumesSkippingWhatTheIngestHolds) {
  StartIngest("ref-1", 700000);
  CountingSource source(data_);
  int64_t resumed_at = -1;
  CopyOptions options;
  options.on_resume = [&](int64_t offset) { resumed_at = offset; };
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", source, desc_, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->resumed_from, 700000);
  EXPECT_EQ(resumed_at, 700000);
  // The skipped part was not sent again: only the rest was read through Read.
  EXPECT_EQ(source.read, desc_.size - 700000);
  EXPECT_EQ(Stored(desc_.digest), data_);
}

TEST_F(CopyTest, ExistingBlobIsNotReadAndGetsTheLabels) {
  ASSERT_TRUE(WriteBlob(*store_, ctx_, "first", data_, desc_.digest, {{"old", "x"}}).ok());
  UntouchableSource source;
  CopyOptions options;
  options.labels = {{"new", "y"}};
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-2", source, desc_, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->already_existed);
  EXPECT_EQ(result->size, desc_.size);
  Labels labels = store_->GetInfo(ctx_, desc_.digest)->labels;
  EXPECT_EQ(labels, (Labels{{"old", "x"}, {"new", "y"}}));
}

TEST_F(CopyTest, WrongDigestAbortsTheIngest) {
  std::string other = data_;
  other[10] = 'x';
  StringSource source(other);
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", source, desc_);
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("digest mismatch"));
  EXPECT_THAT(result.status().message(), HasSubstr("aborted"));
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(ctx_, "ref-1").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->GetInfo(ctx_, desc_.digest).status()));
}

TEST_F(CopyTest, LongerThanTheSizeAbortsTheIngest) {
  StringSource source(data_ + "more");
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", source, desc_);
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("longer than the expected size"));
  EXPECT_TRUE(absl::IsNotFound(store_->GetStatus(ctx_, "ref-1").status()));
}

TEST_F(CopyTest, ShortSourceKeepsTheIngestForAResume) {
  StringSource cut(data_.substr(0, 1500000));
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", cut, desc_);
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("kept at offset 1500000"));
  absl::StatusOr<IngestStatus> status = store_->GetStatus(ctx_, "ref-1");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 1500000);
  // The ref is free again, and the next attempt completes it.
  StringSource whole(data_);
  absl::StatusOr<CopyResult> again = Copy(ctx_, *store_, "ref-1", whole, desc_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->resumed_from, 1500000);
  EXPECT_EQ(Stored(desc_.digest), data_);
}

TEST_F(CopyTest, SourceShorterThanTheIngestIsRefused) {
  StartIngest("ref-1", 700000);
  StringSource source(data_.substr(0, 1000));
  absl::StatusOr<CopyResult> result = Copy(ctx_, *store_, "ref-1", source, desc_);
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("already at offset 700000"));
  EXPECT_EQ(store_->GetStatus(ctx_, "ref-1")->offset, 700000);
}

TEST_F(CopyTest, StopsWhenTheCallerLeavesAndKeepsTheIngest) {
  auto cancellation = std::make_shared<Cancellation>();
  Context ctx = ctx_;
  ctx.cancellation = cancellation;
  // Cancelled after the first chunk arrives.
  CopyOptions options;
  options.progress = [&](int64_t) { cancellation->Cancel(); };
  StringSource source(data_);
  absl::StatusOr<CopyResult> result = Copy(ctx, *store_, "ref-1", source, desc_, options);
  EXPECT_TRUE(absl::IsCancelled(result.status())) << result.status();
  absl::StatusOr<IngestStatus> status = store_->GetStatus(ctx_, "ref-1");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, static_cast<int64_t>(kStreamChunk));
  EXPECT_TRUE(absl::IsNotFound(store_->GetInfo(ctx_, desc_.digest).status()));
}

TEST_F(CopyTest, BlobSourceReadsInChunksAndStopsWhenCancelled) {
  ASSERT_TRUE(WriteBlob(*store_, ctx_, "w", data_, desc_.digest, {}).ok());
  auto cancellation = std::make_shared<Cancellation>();
  Context ctx = ctx_;
  ctx.cancellation = cancellation;
  absl::StatusOr<std::unique_ptr<BlobSource>> source =
      BlobSource::Open(*store_, ctx, desc_.digest, desc_.size, 4096);
  ASSERT_TRUE(source.ok()) << source.status();
  std::string buf(100000, '\0');
  absl::StatusOr<size_t> n = (*source)->Read(buf.data(), buf.size());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4096u);
  EXPECT_EQ(buf.substr(0, 4096), data_.substr(0, 4096));
  ASSERT_EQ(*(*source)->Skip(10000), 10000);
  n = (*source)->Read(buf.data(), 10);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf.substr(0, 10), data_.substr(14096, 10));
  cancellation->Cancel();
  EXPECT_TRUE(absl::IsCancelled((*source)->Read(buf.data(), buf.size()).status()));

  EXPECT_TRUE(absl::IsFailedPrecondition(
      BlobSource::Open(*store_, ctx_, desc_.digest, desc_.size + 1).status()));
  EXPECT_TRUE(absl::IsNotFound(BlobSource::Open(*store_, ctx_, Sha256Of("x")).status()));
}

TEST_F(CopyTest, WriterSinkChecksSizeAndDigestBeforeCommitting) {
  WriterOptions opts;
  opts.ref = "sink";
  auto writer = store_->OpenWriter(ctx_, opts);
  ASSERT_TRUE(writer.ok());
  {
    WriterSink sink(**writer, 0, desc_.size, desc_.digest, 1000);
    EXPECT_TRUE(absl::IsInvalidArgument(sink.Write(data_ + "x")));
    ASSERT_TRUE(sink.Write(data_.substr(0, 5000)).ok());
    EXPECT_EQ(sink.offset(), 5000);
    absl::Status committed = sink.Commit({});
    EXPECT_TRUE(absl::IsFailedPrecondition(committed)) << committed;
    EXPECT_THAT(committed.message(), HasSubstr("holds 5000 bytes"));
  }
  // The ingest was kept, with what the sink flushed, and the ref released.
  EXPECT_EQ(store_->GetStatus(ctx_, "sink")->offset, 5000);
  writer = store_->OpenWriter(ctx_, opts);
  ASSERT_TRUE(writer.ok()) << writer.status();
  WriterSink sink(**writer, 5000, desc_.size, desc_.digest);
  ASSERT_TRUE(sink.Write(absl::string_view(data_).substr(5000)).ok());
  ASSERT_TRUE(sink.Commit({}).ok());
  EXPECT_EQ(Stored(desc_.digest), data_);
}

// The puller's case: the registry client checked the digest, the sink does not hash again, and
// the store still refuses bytes that are not the expected blob.
TEST_F(CopyTest, WriterSinkLeavingTheDigestToTheCallerStillCommitsOnlyTheExpectedBlob) {
  WriterOptions opts;
  opts.ref = "caller-checked";
  opts.expected = desc_.digest;
  auto writer = store_->OpenWriter(ctx_, opts);
  ASSERT_TRUE(writer.ok());
  std::string wrong = data_;
  wrong[7] ^= 1;
  {
    WriterSink sink(**writer, 0, desc_.size, desc_.digest);
    sink.LeaveDigestToCaller();
    ASSERT_TRUE(sink.Write(wrong).ok());
    EXPECT_TRUE(sink.digest().IsEmpty());
    absl::Status committed = sink.Commit({});
    EXPECT_FALSE(committed.ok());
    EXPECT_THAT(std::string(committed.message()), HasSubstr(desc_.digest.ToString()));
  }
  EXPECT_FALSE(store_->GetInfo(ctx_, desc_.digest).ok());
  ASSERT_TRUE(store_->Abort(ctx_, "caller-checked").ok());
  writer = store_->OpenWriter(ctx_, opts);
  ASSERT_TRUE(writer.ok()) << writer.status();
  WriterSink sink(**writer, 0, desc_.size, desc_.digest);
  sink.LeaveDigestToCaller();
  ASSERT_TRUE(sink.Write(data_).ok());
  ASSERT_TRUE(sink.Commit({}).ok());
  EXPECT_EQ(Stored(desc_.digest), data_);
}

}  // namespace
}  // namespace berth::content
