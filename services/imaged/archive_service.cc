// DistributionService's Import and Export (distribution_service.h): the gRPC streams adapted
// to the ByteSource and ByteSink the Importer and Exporter take.

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "lib/base/grpc_status.h"
#include "lib/diff/proto_convert.h"
#include "lib/server/request_context.h"
#include "services/imaged/distribution_service.h"

namespace berth::imaged {

namespace {

namespace pb = ::berth::distribution::v1;

using ImportStream = grpc::ServerReaderWriter<pb::ImportProgress, pb::ImportRequest>;

// The tarball's bytes, message after message, until the client half-closes.
class ImportSource : public ByteSource {
 public:
  ImportSource(ImportStream& stream, std::string first) : stream_(stream), data_(std::move(first)) {}

  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    while (pos_ == data_.size()) {
      pb::ImportRequest message;
      if (done_ || !stream_.Read(&message)) {
        done_ = true;
        return 0;
      }
      data_ = std::move(*message.mutable_data());
      pos_ = 0;
    }
    size_t n = std::min(size, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  ImportStream& stream_;
  std::string data_;
  size_t pos_ = 0;
  bool done_ = false;
};

// The tarball sent back in chunks of up to 1 MiB.
class ExportSink : public ByteSink {
 public:
  explicit ExportSink(grpc::ServerWriter<pb::ExportChunk>& writer) : writer_(writer) {}

  absl::Status Write(absl::string_view data) override {
    buf_.append(data.data(), data.size());
    return buf_.size() >= kChunk ? Flush() : absl::OkStatus();
  }
  absl::Status Close() override { return Flush(); }

 private:
  static constexpr size_t kChunk = 1 << 20;

  absl::Status Flush() {
    if (buf_.empty()) {
      return absl::OkStatus();
    }
    pb::ExportChunk chunk;
    chunk.set_data(std::move(buf_));
    buf_.clear();
    if (!writer_.Write(chunk)) {
      return absl::CancelledError("export: the client stopped reading");
    }
    return absl::OkStatus();
  }

  grpc::ServerWriter<pb::ExportChunk>& writer_;
  std::string buf_;
};

}  // namespace

grpc::Status DistributionService::Import(grpc::ServerContext* server_context,
                                         ImportStream* stream) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (importer_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "import is not served here");
  }
  pb::ImportRequest first;
  if (!stream->Read(&first)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "import: no request arrived");
  }
  const pb::ImportOptions& options = first.options();
  ImportRequest request;
  request.unpack = options.unpack();
  if (!options.snapshotter().empty()) {
    request.snapshotter = options.snapshotter();
  }
  request.all_platforms = options.all_platforms();
  request.platform = options.platform();
  request.index_name = options.index_name();
  ImportSource source(*stream, std::move(*first.mutable_data()));
  absl::StatusOr<std::vector<images::Image>> images =
      importer_->Import(*ctx, source, request, [stream](const BlobEvent& event) {
        pb::ImportProgress message;
        BlobToProto(event, message.add_blobs());
        stream->Write(message);
      });
  if (!images.ok()) {
    return ToGrpcStatus(images.status());
  }
  pb::ImportProgress last;
  for (const images::Image& image : *images) {
    pb::PulledImage* out = last.add_images();
    out->set_name(image.name);
    *out->mutable_target() = diff::DescriptorToProto(image.target);
  }
  stream->Write(last);
  return grpc::Status::OK;
}

grpc::Status DistributionService::Export(grpc::ServerContext* server_context,
                                         const pb::ExportRequest* request,
                                         grpc::ServerWriter<pb::ExportChunk>* writer) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (exporter_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "export is not served here");
  }
  ExportRequest export_request;
  export_request.names.assign(request->names().begin(), request->names().end());
  export_request.platform = request->platform();
  export_request.all_platforms = request->all_platforms();
  ExportSink sink(*writer);
  return ToGrpcStatus(exporter_->Export(*ctx, export_request, sink));
}

}  // namespace berth::imaged
