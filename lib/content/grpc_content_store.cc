#include "lib/content/grpc_content_store.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"
#include "lib/content/proto_convert.h"

namespace berth::content {
namespace {

// The largest payload of one WRITE message (containerd's servers and clients use 1 MiB too).
constexpr size_t kWriteChunk = 1 << 20;
// How many WRITE messages may await their acknowledgement.
constexpr size_t kWriteWindow = 8;

// One committed blob, read with one Read call per ReadAt.
class GrpcReader : public Reader {
 public:
  GrpcReader(v1::Content::Stub* stub, Context ctx, Digest digest, int64_t size)
      : stub_(stub), ctx_(std::move(ctx)), digest_(std::move(digest)), size_(size) {}

  int64_t Size() const override { return size_; }

  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) override {
    if (offset < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative read offset ", offset));
    }
    if (offset > size_) {
      return absl::OutOfRangeError(absl::StrCat("content ", digest_.ToString(), ": read at ",
                                                offset, " past its length ", size_));
    }
    if (size == 0 || offset == size_) {
      return 0;  // The server reads to the end when asked for 0 bytes; nothing to ask.
    }
    grpc::ClientContext client_context;
    ApplyContext(ctx_, &client_context);
    v1::ReadContentRequest request;
    request.set_digest(digest_.ToString());
    request.set_offset(offset);
    request.set_size(static_cast<int64_t>(size));
    std::unique_ptr<grpc::ClientReader<v1::ReadContentResponse>> stream =
        stub_->Read(&client_context, request);
    v1::ReadContentResponse response;
    size_t n = 0;
    // The server sends at most `size` bytes; read to the end of the stream so Finish is clean.
    while (stream->Read(&response)) {
      size_t take = std::min(response.data().size(), size - n);
      std::memcpy(buf + n, response.data().data(), take);
      n += take;
    }
    if (absl::Status status = FromGrpcStatus(stream->Finish()); !status.ok()) {
      return status;
    }
    return n;
  }

 private:
  v1::Content::Stub* stub_;
  const Context ctx_;
  const Digest digest_;
  const int64_t size_;
};

// One ingest over one Write stream (containerd's proxy remoteWriter, with explicit errors).
class GrpcWriter : public Writer {
 public:
  static absl::StatusOr<std::unique_ptr<Writer>> Open(v1::Content::Stub* stub, const Context& ctx,
                                                      const WriterOptions& opts) {
    if (opts.ref.empty()) {
      return absl::InvalidArgumentError("an ingest needs a ref");
    }
    auto writer = std::unique_ptr<GrpcWriter>(new GrpcWriter(opts));
    ApplyContext(ctx, &writer->client_context_);
    writer->stream_ = stub->Write(&writer->client_context_);
    v1::WriteContentRequest request;
    request.set_action(v1::STAT);
    request.set_ref(opts.ref);
    request.set_total(opts.total);
    request.set_expected(opts.expected.ToString());
    absl::StatusOr<v1::WriteContentResponse> response = writer->RoundTrip(request);
    if (!response.ok()) {
      return response.status();
    }
    writer->offset_ = response->offset();
    writer->opened_ = *std::move(response);
    return std::unique_ptr<Writer>(std::move(writer));
  }

  ~GrpcWriter() override { Close().IgnoreError(); }

  // Before anything is written, Open's STAT answers: the ref is this writer's alone, so the
  // ingest has not changed since (a round trip saved per blob a pull writes).
  absl::StatusOr<IngestStatus> Status() override {
    absl::StatusOr<v1::WriteContentResponse> response = opened_;
    if (!response.ok()) {
      v1::WriteContentRequest request;
      request.set_action(v1::STAT);
      response = RoundTrip(request);
    }
    if (!response.ok()) {
      return response.status();
    }
    IngestStatus status;
    status.ref = ref_;
    status.offset = response->offset();
    status.total = response->total();
    status.expected = expected_;
    status.started_at = TimeFromProto(response->started_at());
    status.updated_at = TimeFromProto(response->updated_at());
    return status;
  }

  // Waits for the acknowledgements in flight; after a stream error the last digest the server
  // reported (Commit then returns the error).
  Digest CurrentDigest() override {
    AcknowledgeAll().IgnoreError();
    return digest_;
  }

  absl::Status Write(absl::string_view data) override {
    // Pipelined: up to kWriteWindow chunks are on the wire before their acknowledgements are
    // read, so the client's reading and the server's writing and hashing overlap.
    opened_ = absl::FailedPreconditionError("written since opened");
    while (!data.empty()) {
      absl::string_view chunk = data.substr(0, kWriteChunk);
      data.remove_prefix(chunk.size());
      v1::WriteContentRequest request;
      request.set_action(v1::WRITE);
      request.set_offset(offset_);
      request.set_data(chunk.data(), chunk.size());
      if (absl::Status sent = Send(request); !sent.ok()) {
        return sent;
      }
      offset_ += static_cast<int64_t>(chunk.size());
      unacknowledged_.push_back(offset_);
      if (unacknowledged_.size() >= kWriteWindow) {
        if (absl::Status acked = AcknowledgeOne(); !acked.ok()) {
          return acked;
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Truncate(int64_t size) override {
    if (size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ref ", ref_, ": truncate to ", size, " (only 0 is supported)"));
    }
    // A WRITE at offset 0 with no data makes the server truncate (contentserver.go).
    opened_ = absl::FailedPreconditionError("truncated since opened");
    v1::WriteContentRequest request;
    request.set_action(v1::WRITE);
    request.set_offset(0);
    absl::StatusOr<v1::WriteContentResponse> response = RoundTrip(request);
    if (!response.ok()) {
      return response.status();
    }
    offset_ = response->offset();
    return absl::OkStatus();
  }

  absl::Status Commit(int64_t size, const Digest& expected, const Labels& labels) override {
    v1::WriteContentRequest request;
    request.set_action(v1::COMMIT);
    request.set_total(size);
    request.set_offset(offset_);
    request.set_expected(expected.ToString());
    request.mutable_labels()->insert(labels.begin(), labels.end());
    absl::StatusOr<v1::WriteContentResponse> response = RoundTrip(request);
    if (!response.ok()) {
      return response.status();  // RoundTrip finished the stream.
    }
    absl::Status closed = Close();
    if (size > 0 && response->offset() != size) {
      return absl::FailedPreconditionError(
          absl::StrCat("ref ", ref_, ": committed size ", response->offset(), ", expected ", size));
    }
    if (!expected.IsEmpty() && digest_ != expected) {
      return absl::FailedPreconditionError(absl::StrCat("ref ", ref_, ": committed digest ",
                                                        digest_.ToString(), ", expected ",
                                                        expected.ToString()));
    }
    return closed;
  }

  absl::Status Close() override {
    absl::Status acked = AcknowledgeAll();
    if (finished_) {
      return acked;
    }
    finished_ = true;
    stream_->WritesDone();
    // containerd's server may send one more response before it ends the stream; drain it.
    v1::WriteContentResponse ignored;
    while (stream_->Read(&ignored)) {
    }
    return FromGrpcStatus(stream_->Finish());
  }

 private:
  explicit GrpcWriter(const WriterOptions& opts) : ref_(opts.ref), expected_(opts.expected) {}

  // Sends one request and reads its response, after every acknowledgement still in flight.
  // On any failure the stream is over: returns the server's status (or Unavailable if the
  // stream ended without one).
  absl::StatusOr<v1::WriteContentResponse> RoundTrip(const v1::WriteContentRequest& request) {
    if (absl::Status acked = AcknowledgeAll(); !acked.ok()) {
      return acked;
    }
    if (absl::Status sent = Send(request); !sent.ok()) {
      return sent;
    }
    return Receive();
  }

  absl::Status Send(const v1::WriteContentRequest& request) {
    if (finished_) {
      return absl::FailedPreconditionError(absl::StrCat("writer for ref ", ref_, " is closed"));
    }
    if (!stream_->Write(request)) {
      return Fail();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::WriteContentResponse> Receive() {
    v1::WriteContentResponse response;
    if (finished_) {
      return absl::FailedPreconditionError(absl::StrCat("writer for ref ", ref_, " is closed"));
    }
    if (!stream_->Read(&response)) {
      return Fail();
    }
    if (!response.digest().empty()) {
      absl::StatusOr<Digest> digest = Digest::Parse(response.digest());
      if (!digest.ok()) {
        return digest.status();
      }
      digest_ = *std::move(digest);
    }
    return response;
  }

  // Reads the acknowledgement of the oldest WRITE in flight and checks its offset.
  absl::Status AcknowledgeOne() {
    int64_t want = unacknowledged_.front();
    unacknowledged_.pop_front();
    absl::StatusOr<v1::WriteContentResponse> response = Receive();
    if (!response.ok()) {
      unacknowledged_.clear();
      return response.status();
    }
    if (response->offset() != want) {
      unacknowledged_.clear();
      return absl::DataLossError(absl::StrCat("ref ", ref_, ": wrote up to ", want,
                                              " but the server is at ", response->offset()));
    }
    return absl::OkStatus();
  }

  absl::Status AcknowledgeAll() {
    while (!unacknowledged_.empty()) {
      if (absl::Status acked = AcknowledgeOne(); !acked.ok()) {
        return acked;
      }
    }
    return absl::OkStatus();
  }

  // The stream broke: its final status, or Unavailable if it ended without an error.
  absl::Status Fail() {
    finished_ = true;
    absl::Status status = FromGrpcStatus(stream_->Finish());
    if (status.ok()) {
      status = absl::UnavailableError(
          absl::StrCat("ref ", ref_, ": the server ended the write stream early"));
    }
    return status;
  }

  const std::string ref_;
  const Digest expected_;
  grpc::ClientContext client_context_;  // outlives stream_
  std::unique_ptr<grpc::ClientReaderWriter<v1::WriteContentRequest, v1::WriteContentResponse>>
      stream_;
  bool finished_ = false;
  // Open's STAT response, until anything is written or truncated.
  absl::StatusOr<v1::WriteContentResponse> opened_ = absl::FailedPreconditionError("not open");
  int64_t offset_ = 0;                  // bytes sent
  std::deque<int64_t> unacknowledged_;  // the offset each WRITE in flight should reach
  Digest digest_;
};

}  // namespace

GrpcContentStore::GrpcContentStore(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(v1::Content::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<Reader>> GrpcContentStore::OpenReader(const Context& ctx,
                                                                     const Digest& digest) {
  absl::StatusOr<Info> info = GetInfo(ctx, digest);
  if (!info.ok()) {
    return info.status();
  }
  return OpenReaderOfSize(ctx, digest, info->size);
}

std::unique_ptr<Reader> GrpcContentStore::OpenReaderOfSize(const Context& ctx,
                                                           const Digest& digest, int64_t size) {
  return std::unique_ptr<Reader>(new GrpcReader(stub_.get(), ctx, digest, size));
}

absl::StatusOr<std::unique_ptr<Writer>> GrpcContentStore::OpenWriter(const Context& ctx,
                                                                     const WriterOptions& opts) {
  return GrpcWriter::Open(stub_.get(), ctx, opts);
}

absl::StatusOr<Info> GrpcContentStore::GetInfo(const Context& ctx, const Digest& digest) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::InfoRequest request;
  request.set_digest(digest.ToString());
  v1::InfoResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Info(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return InfoFromProto(response.info());
}

absl::StatusOr<Info> GrpcContentStore::Update(const Context& ctx, const Info& info,
                                              const std::vector<std::string>& fieldpaths) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UpdateRequest request;
  *request.mutable_info() = InfoToProto(info);
  for (const std::string& path : fieldpaths) {
    request.mutable_update_mask()->add_paths(path);
  }
  v1::UpdateResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Update(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return InfoFromProto(response.info());
}

absl::Status GrpcContentStore::Walk(const Context& ctx, const std::vector<std::string>& filters,
                                    const std::function<absl::Status(const Info&)>& fn) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ListContentRequest request;
  for (const std::string& filter : filters) {
    request.add_filters(filter);
  }
  std::unique_ptr<grpc::ClientReader<v1::ListContentResponse>> stream =
      stub_->List(&client_context, request);
  v1::ListContentResponse response;
  absl::Status stopped;
  while (stopped.ok() && stream->Read(&response)) {
    for (const v1::Info& proto : response.info()) {
      absl::StatusOr<Info> info = InfoFromProto(proto);
      stopped = info.ok() ? fn(*info) : info.status();
      if (!stopped.ok()) {
        break;
      }
    }
  }
  if (!stopped.ok()) {
    client_context.TryCancel();
    stream->Finish();  // Cancelled: the caller's error is the one to report.
    return stopped;
  }
  return FromGrpcStatus(stream->Finish());
}

absl::Status GrpcContentStore::Delete(const Context& ctx, const Digest& digest) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::DeleteContentRequest request;
  request.set_digest(digest.ToString());
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Delete(&client_context, request, &response));
}

absl::StatusOr<IngestStatus> GrpcContentStore::GetStatus(const Context& ctx,
                                                         const std::string& ref) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::StatusRequest request;
  request.set_ref(ref);
  v1::StatusResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Status(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  return StatusFromProto(response.status());
}

absl::StatusOr<std::vector<IngestStatus>> GrpcContentStore::ListStatuses(
    const Context& ctx, const std::vector<std::string>& filters) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::ListStatusesRequest request;
  for (const std::string& filter : filters) {
    request.add_filters(filter);
  }
  v1::ListStatusesResponse response;
  if (absl::Status status =
          FromGrpcStatus(stub_->ListStatuses(&client_context, request, &response));
      !status.ok()) {
    return status;
  }
  std::vector<IngestStatus> statuses;
  for (const v1::Status& proto : response.statuses()) {
    absl::StatusOr<IngestStatus> status = StatusFromProto(proto);
    if (!status.ok()) {
      return status.status();
    }
    statuses.push_back(*std::move(status));
  }
  return statuses;
}

absl::Status GrpcContentStore::Abort(const Context& ctx, const std::string& ref) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::AbortRequest request;
  request.set_ref(ref);
  google::protobuf::Empty response;
  return FromGrpcStatus(stub_->Abort(&client_context, request, &response));
}

}  // namespace berth::content
