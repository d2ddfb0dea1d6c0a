#include "services/snapshotd/unpack_service.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/grpc_status.h"
#include "lib/diff/proto_convert.h"
#include "lib/server/request_context.h"

namespace berth::snapshotd {

UnpackService::UnpackService(ParallelUnpacker& unpacker, std::string default_namespace)
    : unpacker_(unpacker), default_namespace_(std::move(default_namespace)) {}

namespace {

namespace v1 = ::berth::snapshots::v1;

struct UnpackInput {
  std::vector<oci::Descriptor> layers;
  std::vector<std::string> chain;
  snapshots::Labels labels;
};

absl::StatusOr<UnpackInput> FromProto(const v1::UnpackRequest& request) {
  UnpackInput in;
  in.layers.reserve(static_cast<size_t>(request.layers_size()));
  for (int i = 0; i < request.layers_size(); ++i) {
    absl::StatusOr<oci::Descriptor> desc = diff::DescriptorFromProto(request.layers(i));
    if (!desc.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unpack: layer ", i, " descriptor: ", desc.status().message()));
    }
    in.layers.push_back(*std::move(desc));
  }
  in.chain.assign(request.chain().begin(), request.chain().end());
  in.labels.insert(request.labels().begin(), request.labels().end());
  return in;
}

v1::UnpackEvent EventToProto(const snapshots::UnpackProgress& p) {
  v1::UnpackEvent event;
  event.set_layer(static_cast<uint32_t>(p.layer));
  switch (p.state) {
    case snapshots::UnpackProgress::State::kStarted:
      event.set_state(v1::UnpackEvent::STARTED);
      return event;
    case snapshots::UnpackProgress::State::kApplied:
      event.set_state(v1::UnpackEvent::APPLIED);
      break;
    case snapshots::UnpackProgress::State::kReused:
      event.set_state(v1::UnpackEvent::REUSED);
      break;
  }
  *event.mutable_applied() = diff::DescriptorToProto(p.applied);
  return event;
}

}  // namespace

grpc::Status UnpackService::Unpack(grpc::ServerContext* server_context,
                                   const v1::UnpackRequest* request,
                                   v1::UnpackResponse* response) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  absl::StatusOr<UnpackInput> in = FromProto(*request);
  if (!in.ok()) {
    return ToGrpcStatus(in.status());
  }
  absl::StatusOr<std::vector<oci::Descriptor>> applied =
      unpacker_.Unpack(*ctx, in->layers, in->chain, in->labels);
  if (!applied.ok()) {
    return ToGrpcStatus(applied.status());
  }
  for (const oci::Descriptor& desc : *applied) {
    *response->add_applied() = diff::DescriptorToProto(desc);
  }
  return grpc::Status::OK;
}

grpc::Status UnpackService::UnpackStream(
    grpc::ServerContext* server_context,
    grpc::ServerReaderWriter<v1::UnpackStreamResponse, v1::UnpackStreamRequest>* stream) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  v1::UnpackStreamRequest request;
  if (!stream->Read(&request) || !request.has_start()) {
    return ToGrpcStatus(absl::InvalidArgumentError("unpack stream: the first message is not start"));
  }
  absl::StatusOr<UnpackInput> in = FromProto(request.start());
  if (!in.ok()) {
    return ToGrpcStatus(in.status());
  }
  // The workers report while this thread reads: one write at a time.
  absl::Mutex write_mu;
  auto write = [&](const v1::UnpackStreamResponse& response) {
    absl::MutexLock lock(&write_mu);
    stream->Write(response);
  };
  absl::StatusOr<std::unique_ptr<snapshots::UnpackSession>> session =
      unpacker_.Start(*ctx, in->layers, in->chain, in->labels,
                      [&](const snapshots::UnpackProgress& p) {
                        v1::UnpackStreamResponse response;
                        *response.mutable_event() = EventToProto(p);
                        write(response);
                      });
  if (!session.ok()) {
    return ToGrpcStatus(session.status());
  }
  v1::UnpackStreamResponse started;
  started.mutable_started()->set_reused(static_cast<uint32_t>((*session)->reused()));
  write(started);
  while (stream->Read(&request)) {
    if (!request.has_ready()) {
      return ToGrpcStatus(absl::InvalidArgumentError("unpack stream: start sent twice"));
    }
    if (absl::Status st = (*session)->Ready(request.ready()); !st.ok()) {
      return ToGrpcStatus(st);
    }
  }
  if (server_context->IsCancelled()) {
    return ToGrpcStatus(absl::CancelledError("unpack stream: the client went away"));
  }
  absl::StatusOr<std::vector<oci::Descriptor>> applied = (*session)->Finish();
  if (!applied.ok()) {
    return ToGrpcStatus(applied.status());
  }
  v1::UnpackStreamResponse done;
  for (const oci::Descriptor& desc : *applied) {
    *done.mutable_done()->add_applied() = diff::DescriptorToProto(desc);
  }
  write(done);
  return grpc::Status::OK;
}

}  // namespace berth::snapshotd
