#include "lib/snapshots/grpc_unpacker.h"

#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "lib/base/status_macros.h"
#include "lib/base/grpc_client.h"
#include "lib/base/grpc_status.h"

namespace berth::snapshots {
namespace {

namespace v1 = ::berth::snapshots::v1;

// (lib/diff/proto_convert.h has the same conversions, but berth_diff depends on this library.)
::containerd::types::Descriptor ToProto(const oci::Descriptor& desc) {
  ::containerd::types::Descriptor proto;
  proto.set_media_type(desc.media_type);
  proto.set_digest(desc.digest.ToString());
  proto.set_size(desc.size);
  proto.mutable_annotations()->insert(desc.annotations.begin(), desc.annotations.end());
  return proto;
}

absl::StatusOr<oci::Descriptor> FromProto(const ::containerd::types::Descriptor& proto) {
  oci::Descriptor desc;
  desc.media_type = proto.media_type();
  if (!proto.digest().empty()) {
    absl::StatusOr<Digest> digest = Digest::Parse(proto.digest());
    if (!digest.ok()) {
      return absl::DataLossError(absl::StrCat("unpack: the server returned a bad digest: ",
                                              digest.status().message()));
    }
    desc.digest = *std::move(digest);
  }
  desc.size = proto.size();
  desc.annotations.insert(proto.annotations().begin(), proto.annotations().end());
  return desc;
}

absl::StatusOr<std::vector<oci::Descriptor>> FromProto(const v1::UnpackResponse& response) {
  std::vector<oci::Descriptor> applied;
  applied.reserve(static_cast<size_t>(response.applied_size()));
  for (const ::containerd::types::Descriptor& proto : response.applied()) {
    BERTH_ASSIGN_OR_RETURN(oci::Descriptor desc, FromProto(proto));
    applied.push_back(std::move(desc));
  }
  return applied;
}

v1::UnpackRequest ToProto(absl::string_view snapshotter, const std::vector<oci::Descriptor>& layers,
                          const std::vector<std::string>& chain, const Labels& labels) {
  v1::UnpackRequest request;
  request.set_snapshotter(std::string(snapshotter));
  for (const oci::Descriptor& layer : layers) {
    *request.add_layers() = ToProto(layer);
  }
  for (const std::string& name : chain) {
    request.add_chain(name);
  }
  request.mutable_labels()->insert(labels.begin(), labels.end());
  return request;
}

// One UnpackStream call. The reader thread reads everything the server sends (gRPC's Finish
// wants every message read): `started`, events turned into progress, and `done`. End()
// half-closes (once), joins the reader and takes the call's status (once).
class StreamSession : public UnpackSession {
 public:
  StreamSession(const Context& ctx, const UnpackProgressFn& progress)
      : ctx_(ctx), progress_(progress) {}
  ~StreamSession() override { (void)End(); }

  absl::Status Begin(v1::Unpacker::Stub& stub, const v1::UnpackRequest& start) {
    ApplyContext(ctx_, &client_context_);
    stream_ = stub.UnpackStream(&client_context_);
    v1::UnpackStreamRequest request;
    *request.mutable_start() = start;
    if (!stream_->Write(request)) {
      return End();
    }
    reader_ = std::thread([this] { ReadAll(); });
    // The server answers `started`, or ends the call with why it would not start.
    started_.WaitForNotification();
    if (reused_ < 0) {
      absl::Status status = End();
      return status.ok() ? absl::InternalError("unpack: the stream ended before it started")
                         : status;
    }
    return absl::OkStatus();
  }

  size_t reused() const override { return static_cast<size_t>(reused_); }

  absl::Status Ready(size_t layer) override {
    v1::UnpackStreamRequest request;
    request.set_ready(static_cast<uint32_t>(layer));
    if (ended_ || !stream_->Write(request)) {
      absl::Status status = End();
      return status.ok() ? absl::AbortedError("unpack: the stream ended early") : status;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<oci::Descriptor>> Finish() override {
    if (!ended_) {
      stream_->WritesDone();
      half_closed_ = true;
    }
    // The caller may leave while snapshotd works: cancel the call then.
    while (!reader_done_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
      if (!ctx_.Alive().ok()) {
        client_context_.TryCancel();
        break;
      }
    }
    BERTH_RETURN_IF_ERROR(End());
    BERTH_RETURN_IF_ERROR(ctx_.Alive());
    if (!done_.has_value()) {
      return absl::InternalError("unpack: the stream ended without a result");
    }
    return FromProto(*done_);
  }

 private:
  void ReadAll() {
    v1::UnpackStreamResponse response;
    while (stream_->Read(&response)) {
      if (response.has_started() && !started_.HasBeenNotified()) {
        reused_ = response.started().reused();
        started_.Notify();
      } else if (response.has_done()) {
        done_ = response.done();
      } else if (response.has_event() && progress_) {
        const v1::UnpackEvent& event = response.event();
        UnpackProgress p;
        p.layer = event.layer();
        switch (event.state()) {
          case v1::UnpackEvent::APPLIED:
            p.state = UnpackProgress::State::kApplied;
            break;
          case v1::UnpackEvent::REUSED:
            p.state = UnpackProgress::State::kReused;
            break;
          default:
            p.state = UnpackProgress::State::kStarted;
            break;
        }
        if (absl::StatusOr<oci::Descriptor> applied = FromProto(event.applied()); applied.ok()) {
          p.applied = *std::move(applied);
        }
        progress_(p);
      }
    }
    if (!started_.HasBeenNotified()) {
      started_.Notify();  // reused_ stays -1: it never started
    }
    reader_done_.Notify();
  }

  absl::Status End() {
    if (ended_) {
      return status_;
    }
    ended_ = true;
    if (stream_ == nullptr) {
      return status_ = absl::UnavailableError("unpack: no stream");
    }
    if (!half_closed_) {
      stream_->WritesDone();
      half_closed_ = true;
    }
    if (reader_.joinable()) {
      reader_.join();
    }
    return status_ = FromGrpcStatus(stream_->Finish());
  }

  const Context ctx_;
  const UnpackProgressFn progress_;
  grpc::ClientContext client_context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::UnpackStreamRequest, v1::UnpackStreamResponse>>
      stream_;
  int64_t reused_ = -1;  // written by the reader before started_
  std::thread reader_;
  absl::Notification started_;
  absl::Notification reader_done_;
  std::optional<v1::UnpackResponse> done_;  // written by the reader, read after it joined
  bool half_closed_ = false;
  bool ended_ = false;
  absl::Status status_;
};

}  // namespace

GrpcUnpacker::GrpcUnpacker(std::shared_ptr<grpc::Channel> channel, std::string snapshotter_name)
    : channel_(std::move(channel)),
      stub_(v1::Unpacker::NewStub(channel_)),
      name_(std::move(snapshotter_name)) {}

absl::StatusOr<std::vector<oci::Descriptor>> GrpcUnpacker::Unpack(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const Labels& labels,
    const UnpackProgressFn& progress) {
  grpc::ClientContext client_context;
  ApplyContext(ctx, &client_context);
  v1::UnpackResponse response;
  if (absl::Status status = FromGrpcStatus(stub_->Unpack(
          &client_context, ToProto(name_, layers, chain, labels), &response));
      !status.ok()) {
    return status;
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<oci::Descriptor> applied, FromProto(response));
  if (progress) {
    for (size_t i = 0; i < applied.size(); ++i) {
      UnpackProgress p;
      p.layer = i;
      p.state = applied[i].size == 0 ? UnpackProgress::State::kReused
                                     : UnpackProgress::State::kApplied;
      p.applied = applied[i];
      progress(p);
    }
  }
  return applied;
}

absl::StatusOr<std::unique_ptr<UnpackSession>> GrpcUnpacker::Start(
    const Context& ctx, const std::vector<oci::Descriptor>& layers,
    const std::vector<std::string>& chain, const Labels& labels,
    const UnpackProgressFn& progress) {
  auto session = std::make_unique<StreamSession>(ctx, progress);
  BERTH_RETURN_IF_ERROR(session->Begin(*stub_, ToProto(name_, layers, chain, labels)));
  return session;
}

}  // namespace berth::snapshots
