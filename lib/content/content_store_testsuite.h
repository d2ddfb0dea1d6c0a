#pragma once

// The one conformance suite for content::ContentStore (after containerd's
// content/testsuite): every implementation runs it, the local store directly and the gRPC
// client against a real server, which proves the wire loses nothing. It tests the contract in
// content_store.h and nothing an implementation is free to choose (error messages, timestamps
// beyond "set and ordered").
//
// Usage, in a test .cc that links gtest:
//   struct MyHarness {
//     MyHarness();                       // a fresh, empty store (its own temp dir...)
//     content::ContentStore& store();
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mine, ContentStoreTest, ::testing::Types<MyHarness>);

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/content/content_store.h"

namespace berth::content {

template <typename Harness>
class ContentStoreTest : public ::testing::Test {
 protected:
  ContentStore& store() { return harness_.store(); }

  // Writes `data` under `ref` in one ingest and commits it; returns its digest.
  Digest Commit(const Context& ctx, const std::string& ref, absl::string_view data,
                const Labels& labels = {}) {
    Digest digest = Sha256Of(data);
    absl::StatusOr<std::unique_ptr<Writer>> writer = store().OpenWriter(ctx, {ref, 0, {}});
    EXPECT_TRUE(writer.ok()) << writer.status();
    if (!writer.ok()) {
      return digest;
    }
    EXPECT_TRUE((*writer)->Write(data).ok());
    absl::Status committed = (*writer)->Commit(static_cast<int64_t>(data.size()), digest, labels);
    EXPECT_TRUE(committed.ok()) << committed;
    return digest;
  }

  // The digests Walk reports for `filters` in ctx.
  std::set<std::string> Walked(const Context& ctx, const std::vector<std::string>& filters) {
    std::set<std::string> seen;
    absl::Status status = store().Walk(ctx, filters, [&](const Info& info) {
      seen.insert(info.digest.ToString());
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return seen;
  }

  // A blob bigger than every transport chunk (1 MiB) and not a multiple of it.
  static std::string Big() {
    std::string data((3 << 20) + 17, '\0');
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = static_cast<char>((i * 131 + i / 4099) & 0xff);
    }
    return data;
  }

  Harness harness_;
  const Context ctx_{"suite", "", absl::InfiniteFuture(), nullptr};
};

TYPED_TEST_SUITE_P(ContentStoreTest);

TYPED_TEST_P(ContentStoreTest, WriteCommitReadInfo) {
  const std::string data = this->Big();
  const Digest digest = Sha256Of(data);
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      this->store().OpenWriter(this->ctx_, {"big", static_cast<int64_t>(data.size()), digest});
  ASSERT_TRUE(writer.ok()) << writer.status();
  // In pieces of odd sizes, across chunk boundaries.
  ASSERT_TRUE((*writer)->Write(absl::string_view(data).substr(0, 1000)).ok());
  ASSERT_TRUE((*writer)->Write(absl::string_view(data).substr(1000, 2 << 20)).ok());
  ASSERT_TRUE((*writer)->Write(absl::string_view(data).substr(1000 + (2 << 20))).ok());
  EXPECT_EQ((*writer)->CurrentDigest(), digest);
  absl::StatusOr<IngestStatus> status = (*writer)->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->ref, "big");
  EXPECT_EQ(status->offset, static_cast<int64_t>(data.size()));
  EXPECT_EQ(status->total, static_cast<int64_t>(data.size()));
  ASSERT_TRUE((*writer)->Commit(static_cast<int64_t>(data.size()), digest, {{"k", "v"}}).ok());

  absl::StatusOr<Info> info = this->store().GetInfo(this->ctx_, digest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->digest, digest);
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));
  EXPECT_EQ(info->labels, (Labels{{"k", "v"}}));
  EXPECT_GT(info->created_at, absl::UnixEpoch());
  EXPECT_GE(info->updated_at, info->created_at);

  absl::StatusOr<std::string> read = ReadBlob(this->store(), this->ctx_, digest);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(*read == data) << "read back " << read->size() << " bytes";

  // Committing removed the ingest.
  EXPECT_EQ(this->store().GetStatus(this->ctx_, "big").status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST_P(ContentStoreTest, ReaderAtOffsets) {
  const std::string data = this->Big();
  const Digest digest = this->Commit(this->ctx_, "reader", data);
  absl::StatusOr<std::unique_ptr<Reader>> reader = this->store().OpenReader(this->ctx_, digest);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ((*reader)->Size(), static_cast<int64_t>(data.size()));

  std::string buf(5000, '\0');
  const int64_t across = (1 << 20) - 100;  // spans a transport chunk boundary
  absl::StatusOr<size_t> n = (*reader)->ReadAt(across, buf.data(), buf.size());
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, buf.size());
  EXPECT_TRUE(buf == data.substr(across, buf.size()));

  // A read running past the end returns what is there.
  const int64_t tail = static_cast<int64_t>(data.size()) - 10;
  n = (*reader)->ReadAt(tail, buf.data(), buf.size());
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 10u);
  EXPECT_EQ(buf.substr(0, 10), data.substr(tail));

  // At the end: 0. Past it: OutOfRange.
  n = (*reader)->ReadAt(static_cast<int64_t>(data.size()), buf.data(), buf.size());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ((*reader)
                ->ReadAt(static_cast<int64_t>(data.size()) + 1, buf.data(), buf.size())
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
}

TYPED_TEST_P(ContentStoreTest, MissingBlobIsNotFound) {
  const Digest missing = Sha256Of("never written");
  EXPECT_EQ(this->store().GetInfo(this->ctx_, missing).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().OpenReader(this->ctx_, missing).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Delete(this->ctx_, missing).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().GetStatus(this->ctx_, "no-such-ref").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Abort(this->ctx_, "no-such-ref").code(), absl::StatusCode::kNotFound);
}

TYPED_TEST_P(ContentStoreTest, UpdateLabelsByFieldpath) {
  const Digest digest = this->Commit(this->ctx_, "labels", "labelled", {{"a", "1"}, {"b", "2"}});
  Info info;
  info.digest = digest;

  // One label set, the others untouched.
  info.labels = {{"a", "x"}, {"c", "ignored"}};
  absl::StatusOr<Info> updated = this->store().Update(this->ctx_, info, {"labels.a"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, (Labels{{"a", "x"}, {"b", "2"}}));
  EXPECT_EQ(updated->size, 8);

  // A label named but absent from info.labels is removed.
  info.labels = {};
  updated = this->store().Update(this->ctx_, info, {"labels.b"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, (Labels{{"a", "x"}}));

  // "labels" replaces them all; so does an empty list.
  info.labels = {{"d", "4"}};
  updated = this->store().Update(this->ctx_, info, {"labels"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, (Labels{{"d", "4"}}));
  info.labels = {{"e", "5"}, {"f", "6"}};
  updated = this->store().Update(this->ctx_, info, {});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->labels, (Labels{{"e", "5"}, {"f", "6"}}));

  // The update is stored, not just returned.
  absl::StatusOr<Info> stored = this->store().GetInfo(this->ctx_, digest);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->labels, (Labels{{"e", "5"}, {"f", "6"}}));

  // Only labels are mutable.
  EXPECT_EQ(this->store().Update(this->ctx_, info, {"size"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(ContentStoreTest, WalkWithFilters) {
  const Digest layer = this->Commit(this->ctx_, "w1", "layer bytes", {{"kind", "layer"}});
  const Digest config =
      this->Commit(this->ctx_, "w2", "config bytes", {{"kind", "config"}, {"x", "y"}});
  const Digest plain = this->Commit(this->ctx_, "w3", "plain bytes");

  EXPECT_EQ(this->Walked(this->ctx_, {}),
            (std::set<std::string>{layer.ToString(), config.ToString(), plain.ToString()}));
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.kind==layer"}),
            (std::set<std::string>{layer.ToString()}));
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.\"kind\"==config,labels.x"}),
            (std::set<std::string>{config.ToString()}));
  // A list is a disjunction.
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.kind==layer", "labels.kind==config"}),
            (std::set<std::string>{layer.ToString(), config.ToString()}));
  EXPECT_EQ(this->Walked(this->ctx_, {absl::StrCat("digest==", plain.ToString())}),
            (std::set<std::string>{plain.ToString()}));
  EXPECT_EQ(this->Walked(this->ctx_, {"labels.kind==nothing"}), (std::set<std::string>{}));

  // The callback's error stops the walk and comes back unchanged.
  int calls = 0;
  absl::Status stopped = this->store().Walk(this->ctx_, {}, [&](const Info&) {
    ++calls;
    return absl::AbortedError("enough");
  });
  EXPECT_EQ(stopped, absl::AbortedError("enough"));
  EXPECT_EQ(calls, 1);

  // Infos carry everything.
  absl::Status status =
      this->store().Walk(this->ctx_, {"labels.kind==config"}, [&](const Info& info) {
        EXPECT_EQ(info.size, 12);
        EXPECT_EQ(info.labels, (Labels{{"kind", "config"}, {"x", "y"}}));
        EXPECT_GT(info.created_at, absl::UnixEpoch());
        return absl::OkStatus();
      });
  EXPECT_TRUE(status.ok()) << status;
}

TYPED_TEST_P(ContentStoreTest, MalformedFilterIsInvalidArgument) {
  this->Commit(this->ctx_, "m", "something");
  absl::Status walk =
      this->store().Walk(this->ctx_, {"labels.=="}, [](const Info&) { return absl::OkStatus(); });
  EXPECT_EQ(walk.code(), absl::StatusCode::kInvalidArgument) << walk;
  EXPECT_EQ(this->store().ListStatuses(this->ctx_, {"ref~=[abc"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(ContentStoreTest, DeleteRemovesBlob) {
  const Digest digest = this->Commit(this->ctx_, "del", "to be deleted");
  ASSERT_TRUE(this->store().Delete(this->ctx_, digest).ok());
  EXPECT_EQ(this->store().GetInfo(this->ctx_, digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().OpenReader(this->ctx_, digest).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Delete(this->ctx_, digest).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->Walked(this->ctx_, {}), (std::set<std::string>{}));
}

TYPED_TEST_P(ContentStoreTest, StatusAndListStatuses) {
  const std::string data = "0123456789";
  const Digest digest = Sha256Of(data);
  absl::StatusOr<std::unique_ptr<Writer>> a =
      this->store().OpenWriter(this->ctx_, {"layer-a", 10, digest});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->Write(data.substr(0, 4)).ok());
  absl::StatusOr<std::unique_ptr<Writer>> b =
      this->store().OpenWriter(this->ctx_, {"config-b", 0, {}});
  ASSERT_TRUE(b.ok()) << b.status();

  absl::StatusOr<IngestStatus> status = this->store().GetStatus(this->ctx_, "layer-a");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->ref, "layer-a");
  EXPECT_EQ(status->offset, 4);
  EXPECT_EQ(status->total, 10);
  EXPECT_EQ(status->expected, digest);
  EXPECT_GT(status->started_at, absl::UnixEpoch());
  EXPECT_GE(status->updated_at, status->started_at);

  auto refs = [&](const std::vector<std::string>& filters) {
    std::set<std::string> out;
    absl::StatusOr<std::vector<IngestStatus>> list =
        this->store().ListStatuses(this->ctx_, filters);
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) {
      for (const IngestStatus& s : *list) {
        out.insert(s.ref);
      }
    }
    return out;
  };
  EXPECT_EQ(refs({}), (std::set<std::string>{"layer-a", "config-b"}));
  EXPECT_EQ(refs({"ref~=^layer-"}), (std::set<std::string>{"layer-a"}));
  EXPECT_EQ(refs({"ref==config-b"}), (std::set<std::string>{"config-b"}));

  // Closing a writer keeps its ingest.
  ASSERT_TRUE((*a)->Close().ok());
  ASSERT_TRUE((*b)->Close().ok());
  EXPECT_EQ(refs({}), (std::set<std::string>{"layer-a", "config-b"}));
}

TYPED_TEST_P(ContentStoreTest, AbortRemovesIngest) {
  {
    absl::StatusOr<std::unique_ptr<Writer>> writer =
        this->store().OpenWriter(this->ctx_, {"aborted", 0, {}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Write("partial").ok());
    ASSERT_TRUE((*writer)->Close().ok());
  }
  ASSERT_TRUE(this->store().Abort(this->ctx_, "aborted").ok());
  EXPECT_EQ(this->store().GetStatus(this->ctx_, "aborted").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Abort(this->ctx_, "aborted").code(), absl::StatusCode::kNotFound);
  // The ref starts over from nothing.
  absl::StatusOr<std::unique_ptr<Writer>> again =
      this->store().OpenWriter(this->ctx_, {"aborted", 0, {}});
  ASSERT_TRUE(again.ok()) << again.status();
  absl::StatusOr<IngestStatus> status = (*again)->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 0);
}

TYPED_TEST_P(ContentStoreTest, ResumeClosedWriterAtItsOffset) {
  const std::string data = "resumable content, written in two sessions";
  const Digest digest = Sha256Of(data);
  {
    absl::StatusOr<std::unique_ptr<Writer>> writer =
        this->store().OpenWriter(this->ctx_, {"resume", 0, {}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Write(data.substr(0, 9)).ok());
    ASSERT_TRUE((*writer)->Close().ok());
  }
  {
    // Destroying a writer without Close releases the ref too.
    absl::StatusOr<std::unique_ptr<Writer>> writer =
        this->store().OpenWriter(this->ctx_, {"resume", 0, {}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Write(data.substr(9, 6)).ok());
  }
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      this->store().OpenWriter(this->ctx_, {"resume", 0, {}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  absl::StatusOr<IngestStatus> status = (*writer)->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 15);
  EXPECT_EQ((*writer)->CurrentDigest(), Sha256Of(data.substr(0, 15)));
  ASSERT_TRUE((*writer)->Write(data.substr(15)).ok());
  ASSERT_TRUE((*writer)->Commit(static_cast<int64_t>(data.size()), digest, {}).ok());
  absl::StatusOr<std::string> read = ReadBlob(this->store(), this->ctx_, digest);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, data);
}

TYPED_TEST_P(ContentStoreTest, TruncateRestartsIngest) {
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      this->store().OpenWriter(this->ctx_, {"truncate", 0, {}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Write("wrong start").ok());
  EXPECT_EQ((*writer)->Truncate(3).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*writer)->Truncate(0).ok());
  absl::StatusOr<IngestStatus> status = (*writer)->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 0);
  ASSERT_TRUE((*writer)->Write("right").ok());
  const Digest digest = Sha256Of("right");
  EXPECT_EQ((*writer)->CurrentDigest(), digest);
  ASSERT_TRUE((*writer)->Commit(5, digest, {}).ok());
  absl::StatusOr<std::string> read = ReadBlob(this->store(), this->ctx_, digest);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "right");
}

TYPED_TEST_P(ContentStoreTest, SizeMismatchKeepsIngest) {
  const std::string data = "twelve bytes";
  const Digest digest = Sha256Of(data);
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      this->store().OpenWriter(this->ctx_, {"size-mismatch", 0, {}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Write(data).ok());
  absl::Status committed = (*writer)->Commit(13, digest, {});
  EXPECT_EQ(committed.code(), absl::StatusCode::kFailedPrecondition) << committed;
  EXPECT_EQ(this->store().GetInfo(this->ctx_, digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->Walked(this->ctx_, {}), (std::set<std::string>{}));

  // The ingest is kept, released, and can be finished properly.
  absl::StatusOr<IngestStatus> status = this->store().GetStatus(this->ctx_, "size-mismatch");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 12);
  absl::StatusOr<std::unique_ptr<Writer>> again =
      this->store().OpenWriter(this->ctx_, {"size-mismatch", 0, {}});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Commit(12, digest, {}).ok());
  EXPECT_TRUE(this->store().GetInfo(this->ctx_, digest).ok());
}

TYPED_TEST_P(ContentStoreTest, DigestMismatchKeepsIngest) {
  const std::string data = "these are the bytes";
  const Digest other = Sha256Of("not these bytes");
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      this->store().OpenWriter(this->ctx_, {"digest-mismatch", 0, {}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Write(data).ok());
  absl::Status committed = (*writer)->Commit(0, other, {});
  EXPECT_EQ(committed.code(), absl::StatusCode::kFailedPrecondition) << committed;
  EXPECT_EQ(this->store().GetInfo(this->ctx_, other).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().GetInfo(this->ctx_, Sha256Of(data)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->Walked(this->ctx_, {}), (std::set<std::string>{}));
  absl::StatusOr<IngestStatus> status = this->store().GetStatus(this->ctx_, "digest-mismatch");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, static_cast<int64_t>(data.size()));
  // Commit released the ref even though it failed.
  absl::StatusOr<std::unique_ptr<Writer>> again =
      this->store().OpenWriter(this->ctx_, {"digest-mismatch", 0, {}});
  EXPECT_TRUE(again.ok()) << again.status();
}

TYPED_TEST_P(ContentStoreTest, ConcurrentWriterOnSameRefFails) {
  absl::StatusOr<std::unique_ptr<Writer>> first =
      this->store().OpenWriter(this->ctx_, {"locked", 0, {}});
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<Writer>> second =
      this->store().OpenWriter(this->ctx_, {"locked", 0, {}});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  // The holder is unaffected, and once it lets go the ref opens again.
  ASSERT_TRUE((*first)->Write("still mine").ok());
  ASSERT_TRUE((*first)->Close().ok());
  absl::StatusOr<std::unique_ptr<Writer>> third =
      this->store().OpenWriter(this->ctx_, {"locked", 0, {}});
  ASSERT_TRUE(third.ok()) << third.status();
  absl::StatusOr<IngestStatus> status = (*third)->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->offset, 10);
}

TYPED_TEST_P(ContentStoreTest, DuplicateCommitIsAlreadyExists) {
  const std::string data = "committed twice";
  const Digest digest = this->Commit(this->ctx_, "first", data);

  // A second ingest of the same bytes: AlreadyExists at commit, and its ingest is gone.
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      this->store().OpenWriter(this->ctx_, {"second", 0, {}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Write(data).ok());
  absl::Status committed = (*writer)->Commit(static_cast<int64_t>(data.size()), digest, {});
  EXPECT_EQ(committed.code(), absl::StatusCode::kAlreadyExists) << committed;
  EXPECT_EQ(this->store().GetStatus(this->ctx_, "second").status().code(),
            absl::StatusCode::kNotFound);

  // Opening a writer that expects a committed digest: AlreadyExists up front.
  EXPECT_EQ(this->store().OpenWriter(this->ctx_, {"third", 0, digest}).status().code(),
            absl::StatusCode::kAlreadyExists);

  // WriteBlob treats it as success.
  EXPECT_TRUE(WriteBlob(this->store(), this->ctx_, "fourth", data, digest, {}).ok());
  EXPECT_EQ(this->Walked(this->ctx_, {}), (std::set<std::string>{digest.ToString()}));
}

TYPED_TEST_P(ContentStoreTest, NamespacesAreIsolated) {
  const Context a{"ns-a", "", absl::InfiniteFuture(), nullptr};
  const Context b{"ns-b", "", absl::InfiniteFuture(), nullptr};
  const std::string data = "shared bytes";
  const Digest digest = this->Commit(a, "blob", data, {{"in", "a"}});

  EXPECT_EQ(this->store().GetInfo(b, digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().OpenReader(b, digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().Delete(b, digest).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->Walked(b, {}), (std::set<std::string>{}));

  // Ingests and refs are per namespace too.
  absl::StatusOr<std::unique_ptr<Writer>> in_a = this->store().OpenWriter(a, {"ref", 0, {}});
  ASSERT_TRUE(in_a.ok()) << in_a.status();
  absl::StatusOr<std::unique_ptr<Writer>> in_b = this->store().OpenWriter(b, {"ref", 0, {}});
  ASSERT_TRUE(in_b.ok()) << in_b.status();
  ASSERT_TRUE((*in_a)->Write("aaaa").ok());
  absl::StatusOr<IngestStatus> status_b = (*in_b)->Status();
  ASSERT_TRUE(status_b.ok()) << status_b.status();
  EXPECT_EQ(status_b->offset, 0);
  ASSERT_TRUE((*in_a)->Close().ok());
  ASSERT_TRUE((*in_b)->Close().ok());
  ASSERT_TRUE(this->store().Abort(b, "ref").ok());
  EXPECT_TRUE(this->store().GetStatus(a, "ref").ok());

  // The same bytes committed in b are b's own: labels apart, deleted apart.
  this->Commit(b, "blob", data, {{"in", "b"}});
  absl::StatusOr<Info> info_b = this->store().GetInfo(b, digest);
  ASSERT_TRUE(info_b.ok()) << info_b.status();
  EXPECT_EQ(info_b->labels, (Labels{{"in", "b"}}));
  ASSERT_TRUE(this->store().Delete(a, digest).ok());
  absl::StatusOr<std::string> read = ReadBlob(this->store(), b, digest);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, data);
}

REGISTER_TYPED_TEST_SUITE_P(ContentStoreTest, WriteCommitReadInfo, ReaderAtOffsets,
                            MissingBlobIsNotFound, UpdateLabelsByFieldpath, WalkWithFilters,
                            MalformedFilterIsInvalidArgument, DeleteRemovesBlob,
                            StatusAndListStatuses, AbortRemovesIngest,
                            ResumeClosedWriterAtItsOffset, TruncateRestartsIngest,
                            SizeMismatchKeepsIngest, DigestMismatchKeepsIngest,
                            ConcurrentWriterOnSameRefFails, DuplicateCommitIsAlreadyExists,
                            NamespacesAreIsolated);

}  // namespace berth::content
