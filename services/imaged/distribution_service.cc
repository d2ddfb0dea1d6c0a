#include "services/imaged/distribution_service.h"

#include <optional>
#include <utility>

#include "absl/time/clock.h"

#include "lib/base/grpc_status.h"
#include "lib/diff/proto_convert.h"
#include "lib/server/request_context.h"

namespace berth::imaged {

namespace {

namespace pb = ::berth::distribution::v1;

pb::BlobProgress::State StateToProto(BlobEvent::State state) {
  switch (state) {
    case BlobEvent::State::kWaiting:
      return pb::BlobProgress::WAITING;
    case BlobEvent::State::kDownloading:
      return pb::BlobProgress::DOWNLOADING;
    case BlobEvent::State::kVerifying:
      return pb::BlobProgress::VERIFYING;
    case BlobEvent::State::kUnpacking:
      return pb::BlobProgress::UNPACKING;
    case BlobEvent::State::kDone:
      return pb::BlobProgress::DONE;
    case BlobEvent::State::kExists:
      return pb::BlobProgress::EXISTS;
  }
  return pb::BlobProgress::STATE_UNSPECIFIED;
}

}  // namespace

void BlobToProto(const BlobEvent& event, pb::BlobProgress* blob) {
  blob->set_digest(event.digest.ToString());
  blob->set_media_type(event.media_type);
  blob->set_offset(event.offset);
  blob->set_total(event.total);
  blob->set_state(StateToProto(event.state));
}

DistributionService::DistributionService(Puller& puller,
                                         images::RegistryClientOptions registry_options,
                                         std::string default_namespace, PullMetrics* metrics)
    : puller_(puller),
      registry_options_(registry_options),
      registry_(images::RegistryClient::Create(std::move(registry_options))),
      default_namespace_(std::move(default_namespace)),
      metrics_(metrics) {}

grpc::Status DistributionService::Pull(grpc::ServerContext* server_context,
                                       const pb::PullRequest* request,
                                       grpc::ServerWriter<pb::PullProgress>* writer) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  images::RegistryClient* registry = registry_.get();
  std::unique_ptr<images::RegistryClient> own;
  images::RegistryClientOptions options = registry_options_;
  bool added = false;
  for (const std::string& host : request->plain_http_hosts()) {
    if (!options.hosts[host].plain_http) {
      options.hosts[host].plain_http = true;
      added = true;
    }
  }
  if (added) {
    own = images::RegistryClient::Create(std::move(options));
    registry = own.get();
  }

  PullRequest pull;
  pull.reference = request->reference();
  pull.platform = request->platform();
  pull.unpack = request->unpack();
  if (!request->snapshotter().empty()) {
    pull.snapshotter = request->snapshotter();
  }
  // A client that stopped reading only loses its progress; the pull stops through ctx.
  std::optional<PullMetrics::BlobCounter> counter;
  if (metrics_ != nullptr) {
    counter.emplace(*metrics_);
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<images::Image> image =
      puller_.Pull(*ctx, *registry, pull, [writer, &counter](const BlobEvent& event) {
        if (counter.has_value()) {
          counter->Observe(event);
        }
        pb::PullProgress message;
        BlobToProto(event, message.add_blobs());
        writer->Write(message);
      });
  if (metrics_ != nullptr) {
    metrics_->ObservePull(absl::Now() - start, image.ok());
  }
  if (!image.ok()) {
    return ToGrpcStatus(image.status());
  }
  pb::PullProgress last;
  last.mutable_image()->set_name(image->name);
  *last.mutable_image()->mutable_target() = diff::DescriptorToProto(image->target);
  writer->Write(last);
  return grpc::Status::OK;
}

}  // namespace berth::imaged
