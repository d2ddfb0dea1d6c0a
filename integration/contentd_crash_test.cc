// contentd killed with SIGKILL in the middle of an ingest: after a restart on the same root no
// partial blob is visible anywhere, the ingest is still there at an offset between what the
// daemon acknowledged and what the client sent, and it resumes from that offset to the right
// digest. Driven through containerd's Content gRPC API (the generated stubs), as containerd's
// own clients do. The same test runs against a real containerd as the reference.

#include <sys/wait.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "containerd/services/content/v1/content.grpc.pb.h"
#include "integration/harness.h"
#include "lib/base/grpc_client.h"
#include "lib/content/grpc_content_store.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

namespace api = ::containerd::services::content::v1;
using ::berth::testing::TempDir;

constexpr char kNamespace[] = "crash-test";
constexpr char kRef[] = "crash-ingest";
constexpr size_t kChunk = 1024 * 1024;
constexpr size_t kTotal = 12 * kChunk;
constexpr size_t kAckedChunks = 6;  // acknowledged before the kill; one more is sent unacked

std::unique_ptr<grpc::ClientContext> NewContext() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("containerd-namespace", kNamespace);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

// Reads what the server still sends (containerd repeats its last response when the stream
// ends), so that Finish can return.
void DrainResponses(grpc::ClientReaderWriter<api::WriteContentRequest,
                                             api::WriteContentResponse>* stream) {
  api::WriteContentResponse ignored;
  while (stream->Read(&ignored)) {
  }
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

enum class Backend { kContentd, kContainerd };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kContentd ? "contentd" : "containerd";
}

class ContentdCrashTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    data_ = RandomBytes(kTotal, 42);
    digest_ = Sha256Digest(data_);
    if (GetParam() == Backend::kContentd) {
      contentd_ = std::make_unique<Contentd>(dir_.path(), Contentd::Options{});
      blobs_dir_ = contentd_->root() + "/blobs";
    } else {
      Containerd::Options options;
      options.disable_gc = true;
      containerd_ = std::make_unique<Containerd>(dir_.path(), options);
      blobs_dir_ = containerd_->root() + "/io.containerd.content.v1.content/blobs";
    }
    absl::Status status = StartDaemon();
    ASSERT_TRUE(status.ok()) << status;
  }

  void TearDown() override {
    StopDaemon();
    if (HasFailure()) {
      std::cerr << "daemon logs:\n" << (contentd_ ? contentd_->ReadLog() : containerd_->ReadLog())
                << "\n";
    }
  }

  // Starts (or restarts, on the same root) the daemon and connects to it.
  absl::Status StartDaemon() {
    absl::Status status = contentd_ ? contentd_->Start() : containerd_->Start();
    if (status.ok()) {
      stub_ = api::Content::NewStub(
          Dial(contentd_ ? contentd_->address() : containerd_->address()));
    }
    return status;
  }
  void KillDaemon() {
    if (contentd_) {
      contentd_->Kill();
    } else {
      containerd_->Kill();
    }
  }
  // Returns the wait status (0 when it was not running).
  int StopDaemon() {
    stub_.reset();
    return contentd_ ? contentd_->Stop() : containerd_->Stop();
  }

  grpc::Status Status(api::Status* out) {
    api::StatusRequest req;
    req.set_ref(kRef);
    api::StatusResponse resp;
    grpc::Status status = stub_->Status(NewContext().get(), req, &resp);
    *out = resp.status();
    return status;
  }

  std::vector<std::string> ListDigests() {
    std::vector<std::string> out;
    auto ctx = NewContext();
    auto reader = stub_->List(ctx.get(), api::ListContentRequest());
    api::ListContentResponse resp;
    while (reader->Read(&resp)) {
      for (const api::Info& info : resp.info()) {
        out.push_back(info.digest());
      }
    }
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << Describe(status);
    return out;
  }

  TempDir dir_;
  std::string data_;
  std::string digest_;
  std::unique_ptr<Contentd> contentd_;
  std::unique_ptr<Containerd> containerd_;
  std::string blobs_dir_;
  std::unique_ptr<api::Content::Stub> stub_;
};

TEST_P(ContentdCrashTest, KillMidIngestThenResume) {
  // Start the ingest and write some MiB, each acknowledged.
  auto write_ctx = NewContext();
  auto stream = stub_->Write(write_ctx.get());
  api::WriteContentRequest req;
  api::WriteContentResponse resp;
  req.set_action(api::STAT);
  req.set_ref(kRef);
  req.set_total(kTotal);
  req.set_expected(digest_);
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp)) << Describe(stream->Finish());
  ASSERT_EQ(resp.offset(), 0);

  int64_t acked = 0;
  for (size_t i = 0; i < kAckedChunks; ++i) {
    req.Clear();
    req.set_action(api::WRITE);
    req.set_ref(kRef);
    req.set_offset(static_cast<int64_t>(i * kChunk));
    req.set_data(data_.substr(i * kChunk, kChunk));
    ASSERT_TRUE(stream->Write(req));
    ASSERT_TRUE(stream->Read(&resp)) << Describe(stream->Finish());
    acked = resp.offset();
  }
  ASSERT_EQ(acked, static_cast<int64_t>(kAckedChunks * kChunk));

  // While the stream is open, Status agrees and nothing is committed.
  api::Status st;
  grpc::Status status = Status(&st);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(st.ref(), kRef);
  EXPECT_EQ(st.offset(), acked);
  EXPECT_EQ(st.total(), static_cast<int64_t>(kTotal));

  // One more chunk, not waited for, then SIGKILL with the stream still open.
  req.Clear();
  req.set_action(api::WRITE);
  req.set_ref(kRef);
  req.set_offset(acked);
  req.set_data(data_.substr(kAckedChunks * kChunk, kChunk));
  stream->Write(req);
  const int64_t sent = static_cast<int64_t>((kAckedChunks + 1) * kChunk);
  KillDaemon();
  write_ctx->TryCancel();
  stream->Finish();  // whatever it says: the daemon is gone
  stream.reset();

  // Restart on the same root and state.
  status = grpc::Status::OK;
  absl::Status started = StartDaemon();
  ASSERT_TRUE(started.ok()) << started;

  // No partial blob: not by Info, not by List, not on disk.
  {
    api::InfoRequest info_req;
    info_req.set_digest(digest_);
    api::InfoResponse info_resp;
    status = stub_->Info(NewContext().get(), info_req, &info_resp);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(status);
  }
  EXPECT_TRUE(ListDigests().empty());
  EXPECT_TRUE(ListFiles(blobs_dir_).empty())
      << "files under blobs/: " << ListFiles(blobs_dir_).size();

  // The ingest survived, somewhere between acknowledged and sent.
  status = Status(&st);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(st.ref(), kRef);
  EXPECT_GE(st.offset(), acked);
  EXPECT_LE(st.offset(), sent);
  if (GetParam() == Backend::kContentd) {
    // containerd forgets the expected digest of an ingest when it restarts; contentd keeps it.
    EXPECT_EQ(st.expected(), digest_) << "expected digest kept across the restart";
  }
  EXPECT_EQ(st.total(), static_cast<int64_t>(kTotal)) << "expected size kept across the restart";
  {
    api::ListStatusesResponse statuses;
    status = stub_->ListStatuses(NewContext().get(), api::ListStatusesRequest(), &statuses);
    ASSERT_TRUE(status.ok()) << Describe(status);
    ASSERT_EQ(statuses.statuses_size(), 1);
    EXPECT_EQ(statuses.statuses(0).ref(), kRef);
  }

  // Resume at the offset the daemon reports, then commit.
  {
    auto resume_ctx = NewContext();
    auto resume = stub_->Write(resume_ctx.get());
    req.Clear();
    req.set_action(api::STAT);
    req.set_ref(kRef);
    ASSERT_TRUE(resume->Write(req));
    ASSERT_TRUE(resume->Read(&resp)) << Describe(resume->Finish());
    int64_t offset = resp.offset();
    EXPECT_EQ(offset, st.offset());
    while (offset < static_cast<int64_t>(kTotal)) {
      size_t n = std::min(kChunk, kTotal - static_cast<size_t>(offset));
      req.Clear();
      req.set_action(api::WRITE);
      req.set_ref(kRef);
      req.set_offset(offset);
      req.set_data(data_.substr(static_cast<size_t>(offset), n));
      ASSERT_TRUE(resume->Write(req));
      ASSERT_TRUE(resume->Read(&resp)) << Describe(resume->Finish());
      ASSERT_EQ(resp.offset(), offset + static_cast<int64_t>(n));
      offset = resp.offset();
    }
    req.Clear();
    req.set_action(api::COMMIT);
    req.set_ref(kRef);
    req.set_offset(offset);
    req.set_total(kTotal);
    req.set_expected(digest_);
    ASSERT_TRUE(resume->Write(req));
    ASSERT_TRUE(resume->Read(&resp)) << Describe(resume->Finish());
    EXPECT_EQ(resp.action(), api::COMMIT);
    EXPECT_EQ(resp.digest(), digest_);
    EXPECT_EQ(resp.offset(), static_cast<int64_t>(kTotal));
    resume->WritesDone();
    DrainResponses(resume.get());
    status = resume->Finish();
    EXPECT_TRUE(status.ok()) << Describe(status);
  }

  // Committed: visible, the right bytes, and the ingest is gone.
  {
    api::InfoRequest info_req;
    info_req.set_digest(digest_);
    api::InfoResponse info_resp;
    status = stub_->Info(NewContext().get(), info_req, &info_resp);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_EQ(info_resp.info().size(), static_cast<int64_t>(kTotal));
  }
  EXPECT_EQ(ListDigests(), std::vector<std::string>{digest_});
  std::string blob_file = absl::StrCat(blobs_dir_, "/sha256/",
                                       absl::StripPrefix(digest_, "sha256:"));
  absl::StatusOr<std::string> on_disk = ReadFile(blob_file);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status();
  EXPECT_EQ(Sha256Digest(*on_disk), digest_);
  {
    api::ReadContentRequest read_req;
    read_req.set_digest(digest_);
    auto read_ctx = NewContext();
    auto reader = stub_->Read(read_ctx.get(), read_req);
    api::ReadContentResponse chunk;
    std::string back;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), static_cast<int64_t>(back.size()));
      back += chunk.data();
    }
    status = reader->Finish();
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_EQ(back.size(), kTotal);
    EXPECT_EQ(Sha256Digest(back), digest_);
  }
  status = Status(&st);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(status);

  int exit_status = StopDaemon();
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0) << exit_status;
}

// A kill right after STAT (an ingest opened, nothing written) leaves an empty ingest or none,
// and never a blob; a fresh write under the same ref then commits.
TEST_P(ContentdCrashTest, KillAfterOpenThenWriteFromScratch) {
  auto write_ctx = NewContext();
  auto stream = stub_->Write(write_ctx.get());
  api::WriteContentRequest req;
  api::WriteContentResponse resp;
  req.set_action(api::STAT);
  req.set_ref(kRef);
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp)) << Describe(stream->Finish());
  KillDaemon();
  write_ctx->TryCancel();
  stream->Finish();
  stream.reset();

  absl::Status started = StartDaemon();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_TRUE(ListDigests().empty());
  api::Status st;
  grpc::Status status = Status(&st);
  if (status.ok()) {
    EXPECT_EQ(st.offset(), 0);
  } else {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(status);
  }

  std::string small = data_.substr(0, 1000);
  auto ctx = NewContext();
  auto again = stub_->Write(ctx.get());
  req.Clear();
  req.set_action(api::COMMIT);
  req.set_ref(kRef);
  req.set_total(static_cast<int64_t>(small.size()));
  req.set_expected(Sha256Digest(small));
  req.set_data(small);
  ASSERT_TRUE(again->Write(req));
  ASSERT_TRUE(again->Read(&resp)) << Describe(again->Finish());
  EXPECT_EQ(resp.digest(), Sha256Digest(small));
  again->WritesDone();
  DrainResponses(again.get());
  status = again->Finish();
  EXPECT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(ListDigests(), std::vector<std::string>{Sha256Digest(small)});
}

// Commits at once are group-committed (services/contentd/local_commit.cc): their data renamed
// into blobs/, the directory fsynced, then every row in one transaction. A kill between the
// renames and the rows (BERTH_CONTENTD_CRASH_POINT=commit-renamed) leaves no blob visible, no
// file in blobs/ after the restart, and every blob can be written again.
// contentd's alone: the crash point is contentd's (containerd has no such hook).
class ContentdOnlyCrashTest : public ContentdCrashTest {};

TEST_P(ContentdOnlyCrashTest, KillInGroupCommitBeforeItsRowsLeavesNoBlob) {
  StopDaemon();
  Contentd::Options crashing;
  crashing.env = {"BERTH_CONTENTD_CRASH_POINT=commit-renamed"};
  contentd_ = std::make_unique<Contentd>(dir_.path(), crashing);
  absl::Status started = StartDaemon();
  ASSERT_TRUE(started.ok()) << started;

  constexpr int kBlobs = 6;
  std::vector<std::string> blobs;
  for (int i = 0; i < kBlobs; ++i) {
    blobs.push_back(RandomBytes(200000 + i, 100 + i));
  }
  const Context ctx{"crash", ""};
  std::vector<absl::Status> results(kBlobs);
  {
    content::GrpcContentStore store(Dial(contentd_->address()));
    std::vector<std::thread> writers;
    for (int i = 0; i < kBlobs; ++i) {
      writers.emplace_back([&, i] {
        results[i] = content::WriteBlob(store, ctx, absl::StrCat("group-", i), blobs[i],
                                        Sha256Of(blobs[i]), {});
      });
    }
    for (std::thread& t : writers) {
      t.join();
    }
  }
  for (int i = 0; i < kBlobs; ++i) {
    EXPECT_FALSE(results[i].ok()) << "blob " << i << " committed: the crash point was not hit";
  }
  // The kill came after a rename: a file is in blobs/ that no row names.
  auto blob_files = [&] {
    int files = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(blobs_dir_, ec)) {
      files += entry.is_regular_file() ? 1 : 0;
    }
    return files;
  };
  EXPECT_GT(blob_files(), 0) << "contentd died before renaming anything";
  contentd_->Kill();  // reaps it

  contentd_ = std::make_unique<Contentd>(dir_.path(), Contentd::Options{});
  started = StartDaemon();
  ASSERT_TRUE(started.ok()) << started;
  content::GrpcContentStore store(Dial(contentd_->address()));
  for (int i = 0; i < kBlobs; ++i) {
    absl::StatusOr<content::Info> info = store.GetInfo(ctx, Sha256Of(blobs[i]));
    EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound) << "blob " << i;
  }
  EXPECT_EQ(blob_files(), 0) << "a file no row names was kept in " << blobs_dir_;
  for (int i = 0; i < kBlobs; ++i) {
    absl::Status written = content::WriteBlob(store, ctx, absl::StrCat("group-", i), blobs[i],
                                              Sha256Of(blobs[i]), {});
    ASSERT_TRUE(written.ok()) << "blob " << i << ": " << written;
    absl::StatusOr<std::string> back = content::ReadBlob(store, ctx, Sha256Of(blobs[i]));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == blobs[i]) << "blob " << i << " is not what was written";
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ContentdCrashTest,
                         ::testing::Values(Backend::kContentd, Backend::kContainerd),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, ContentdOnlyCrashTest, ::testing::Values(Backend::kContentd),
                         BackendName);

}  // namespace
}  // namespace berth::integration
