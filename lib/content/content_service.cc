#include "lib/content/content_service.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/base/grpc_status.h"
#include "lib/base/logging.h"
#include "lib/content/proto_convert.h"
#include "lib/server/block_writer.h"
#include "lib/server/request_context.h"

namespace berth::content {
namespace {

namespace v1 = ::containerd::services::content::v1;

// The most data one Read response carries.
constexpr int64_t kReadChunk = 1 << 20;

std::vector<std::string> Strings(const google::protobuf::RepeatedPtrField<std::string>& field) {
  return std::vector<std::string>(field.begin(), field.end());
}

}  // namespace

ContentService::ContentService(content::ContentStore& store, ContentServiceOptions options)
    : store_(store), options_(std::move(options)) {
  if (options_.registry != nullptr) {
    ingested_bytes_ = &prometheus::BuildCounter()
                           .Name("berth_content_ingested_bytes_total")
                           .Help("Bytes accepted by the content Write API")
                           .Register(*options_.registry)
                           .Add({});
    stored_blobs_ = &prometheus::BuildGauge()
                         .Name("berth_content_stored_blobs")
                         .Help("Distinct blobs in the content store")
                         .Register(*options_.registry)
                         .Add({});
    stored_bytes_ = &prometheus::BuildGauge()
                         .Name("berth_content_stored_bytes")
                         .Help("Total size of the blobs in the content store")
                         .Register(*options_.registry)
                         .Add({});
  }
  RefreshGauges();
}

grpc::Status ContentService::Info(grpc::ServerContext* server_context,
                                  const v1::InfoRequest* request, v1::InfoResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) {
    return ToGrpcStatus(digest.status());
  }
  absl::StatusOr<content::Info> info = store_.GetInfo(*ctx, *digest);
  if (!info.ok()) {
    return ToGrpcStatus(info.status());
  }
  *response->mutable_info() = content::InfoToProto(*info);
  return grpc::Status::OK;
}

grpc::Status ContentService::Update(grpc::ServerContext* server_context,
                                    const v1::UpdateRequest* request,
                                    v1::UpdateResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<content::Info> info = content::InfoFromProto(request->info());
  if (!info.ok()) {
    return ToGrpcStatus(info.status());
  }
  absl::StatusOr<content::Info> updated =
      store_.Update(*ctx, *info, Strings(request->update_mask().paths()));
  if (!updated.ok()) {
    return ToGrpcStatus(updated.status());
  }
  *response->mutable_info() = content::InfoToProto(*updated);
  return grpc::Status::OK;
}

grpc::Status ContentService::List(grpc::ServerContext* server_context,
                                  const v1::ListContentRequest* request,
                                  grpc::ServerWriter<v1::ListContentResponse>* writer) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  server::BlockWriter<v1::ListContentResponse> blocks(writer, "list");
  absl::Status status =
      store_.Walk(*ctx, Strings(request->filters()), [&](const content::Info& info) {
        return blocks.Add([&](v1::ListContentResponse& block) {
          *block.add_info() = content::InfoToProto(info);
        });
      });
  if (status.ok()) {
    status = blocks.Flush();
  }
  return ToGrpcStatus(status);
}

grpc::Status ContentService::Delete(grpc::ServerContext* server_context,
                                    const v1::DeleteContentRequest* request,
                                    google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) {
    return ToGrpcStatus(digest.status());
  }
  absl::Status status = store_.Delete(*ctx, *digest);
  if (status.ok()) {
    RefreshGauges();
  }
  return ToGrpcStatus(status);
}

grpc::Status ContentService::Read(grpc::ServerContext* server_context,
                                  const v1::ReadContentRequest* request,
                                  grpc::ServerWriter<v1::ReadContentResponse>* writer) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) {
    return ToGrpcStatus(digest.status());
  }
  absl::StatusOr<std::unique_ptr<content::Reader>> reader = store_.OpenReader(*ctx, *digest);
  if (!reader.ok()) {
    return ToGrpcStatus(reader.status());
  }
  // As containerd: a negative offset reads from 0; size <= 0 (or past the end) reads to the end.
  const int64_t length = (*reader)->Size();
  int64_t offset = std::max<int64_t>(request->offset(), 0);
  if (offset > length) {
    return ToGrpcStatus(absl::OutOfRangeError(absl::StrCat(
        "content ", digest->ToString(), ": read at ", offset, " past its length ", length)));
  }
  int64_t remaining = request->size();
  if (remaining <= 0 || remaining > length - offset) {
    remaining = length - offset;
  }
  return ToGrpcStatus(SendChunks(**reader, *digest, offset, remaining, writer));
}

grpc::Status ContentService::Status(grpc::ServerContext* server_context,
                                    const v1::StatusRequest* request,
                                    v1::StatusResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<content::IngestStatus> status = store_.GetStatus(*ctx, request->ref());
  if (!status.ok()) {
    return ToGrpcStatus(status.status());
  }
  *response->mutable_status() = content::StatusToProto(*status);
  return grpc::Status::OK;
}

grpc::Status ContentService::ListStatuses(grpc::ServerContext* server_context,
                                          const v1::ListStatusesRequest* request,
                                          v1::ListStatusesResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<std::vector<content::IngestStatus>> statuses =
      store_.ListStatuses(*ctx, Strings(request->filters()));
  if (!statuses.ok()) {
    return ToGrpcStatus(statuses.status());
  }
  for (const content::IngestStatus& status : *statuses) {
    *response->add_statuses() = content::StatusToProto(status);
  }
  return grpc::Status::OK;
}

grpc::Status ContentService::Write(grpc::ServerContext* server_context,
                                   grpc::ServerReaderWriter<Resp, Req>* stream) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  Req first;
  if (!stream->Read(&first)) {
    return ToGrpcStatus(absl::InvalidArgumentError("write: the stream ended before a message"));
  }
  absl::Status status = WriteSession(*ctx, std::move(first), stream);
  if (!status.ok() && status.code() != absl::StatusCode::kAlreadyExists) {
    BERTH_LOG(Debug) << "content write failed: " << status;
  }
  return ToGrpcStatus(status);
}

grpc::Status ContentService::Abort(grpc::ServerContext* server_context,
                                   const v1::AbortRequest* request,
                                   google::protobuf::Empty* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, options_.default_namespace);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  return ToGrpcStatus(store_.Abort(*ctx, request->ref()));
}

// containerd's contentserver.go Write, step for step: the first message names the ref and
// opens (locks) the writer; every message is answered with the writer's offset; an `expected`
// digest already committed aborts the ingest with AlreadyExists; WRITE/COMMIT at offset 0 on
// an ingest that has data restarts it (Truncate(0)); any other offset must be the current one.
absl::Status ContentService::WriteSession(const Context& ctx, Req request,
                                          grpc::ServerReaderWriter<Resp, Req>* stream) {
  if (request.ref().empty()) {
    return absl::InvalidArgumentError("first message must have a reference");
  }
  const std::string ref = request.ref();
  int64_t total = request.total();
  absl::StatusOr<Digest> expected = content::OptionalDigestFromProto(request.expected());
  if (!expected.ok()) {
    return expected.status();
  }
  absl::StatusOr<std::unique_ptr<content::Writer>> opened =
      store_.OpenWriter(ctx, content::WriterOptions{ref, total, *expected});
  if (!opened.ok()) {
    return opened.status();
  }
  content::Writer& writer = **opened;
  for (;;) {
    Resp response;
    response.set_action(request.action());
    absl::StatusOr<content::IngestStatus> ws = writer.Status();
    if (!ws.ok()) {
      return ws.status();
    }
    response.set_offset(ws->offset);
    if (!request.expected().empty()) {
      absl::StatusOr<Digest> digest = Digest::Parse(request.expected());
      if (!digest.ok()) {
        return digest.status();
      }
      expected = *std::move(digest);
      if (store_.GetInfo(ctx, *expected).ok()) {
        writer.Close().IgnoreError();
        if (absl::Status aborted = store_.Abort(ctx, ref); !aborted.ok()) {
          BERTH_LOG(Warn) << "write " << ref << ": abort after AlreadyExists: " << aborted;
        }
        return absl::AlreadyExistsError(
            absl::StrCat("content ", expected->ToString(), ": already exists"));
      }
    }
    if (request.total() > 0) {
      total = request.total();
    }
    switch (request.action()) {
      case v1::STAT:
        response.set_digest(writer.CurrentDigest().ToString());
        *response.mutable_started_at() = content::TimeToProto(ws->started_at);
        *response.mutable_updated_at() = content::TimeToProto(ws->updated_at);
        response.set_total(total);
        break;
      case v1::WRITE:
      case v1::COMMIT: {
        if (request.offset() > 0 && request.offset() != ws->offset) {
          return absl::OutOfRangeError(absl::StrCat("write @", request.offset(),
                                                    " must occur at current offset ", ws->offset));
        }
        if (request.offset() == 0 && ws->offset > 0) {
          if (absl::Status st = writer.Truncate(0); !st.ok()) {
            return st;
          }
          response.set_offset(0);
        }
        if (!request.data().empty()) {
          if (absl::Status st = writer.Write(request.data()); !st.ok()) {
            return st;
          }
          if (ingested_bytes_ != nullptr) {
            ingested_bytes_->Increment(static_cast<double>(request.data().size()));
          }
          response.set_offset(response.offset() + static_cast<int64_t>(request.data().size()));
        }
        // Committing writes nothing, so the digest of what was written is final here.
        response.set_digest(writer.CurrentDigest().ToString());
        if (request.action() == v1::COMMIT) {
          content::Labels labels(request.labels().begin(), request.labels().end());
          if (absl::Status st = writer.Commit(total, *expected, labels); !st.ok()) {
            return st;
          }
          RefreshGauges();
        }
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("write: unknown action ", static_cast<int>(request.action())));
    }
    if (!stream->Write(response)) {
      return absl::CancelledError(absl::StrCat("write ", ref, ": the client went away"));
    }
    if (request.action() == v1::COMMIT) {
      return absl::OkStatus();
    }
    request.Clear();
    if (!stream->Read(&request)) {
      // The client closed its side (or went away): release the ref, keep the ingest.
      return writer.Close();
    }
  }
}

absl::Status ContentService::SendChunks(content::Reader& reader, const Digest& digest,
                                        int64_t offset, int64_t remaining,
                                        grpc::ServerWriter<v1::ReadContentResponse>* writer) {
  std::string buffer(static_cast<size_t>(std::min(remaining, kReadChunk)), '\0');
  v1::ReadContentResponse response;
  while (remaining > 0) {
    size_t want = static_cast<size_t>(std::min<int64_t>(remaining, kReadChunk));
    absl::StatusOr<size_t> n = reader.ReadAt(offset, buffer.data(), want);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return absl::DataLossError(
          absl::StrCat("content ", digest.ToString(), ": ended early at ", offset));
    }
    response.set_offset(offset);
    response.set_data(buffer.data(), *n);
    if (!writer->Write(response)) {
      return absl::CancelledError("read: the client went away");
    }
    offset += static_cast<int64_t>(*n);
    remaining -= static_cast<int64_t>(*n);
  }
  return absl::OkStatus();
}

void ContentService::RefreshGauges() {
  if (stored_blobs_ == nullptr || !options_.stats) {
    return;
  }
  ContentStats stats = options_.stats();
  stored_blobs_->Set(static_cast<double>(stats.blobs));
  stored_bytes_->Set(static_cast<double>(stats.bytes));
}

}  // namespace berth::content
