#include "services/imaged/distribution_service.h"

#include <optional>
#include <utility>

#include "absl/time/clock.h"

#include "lib/base/grpc_status.h"
#include "lib/images/registry_credentials.h"
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
    case BlobEvent::State::kUploading:
      return pb::BlobProgress::UPLOADING;
    case BlobEvent::State::kMounted:
      return pb::BlobProgress::MOUNTED;
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
                                         std::string default_namespace, PullMetrics* metrics,
                                         Pusher* pusher, std::string docker_config)
    : puller_(puller),
      registry_options_(registry_options),
      registry_(images::RegistryClient::Create(std::move(registry_options))),
      default_namespace_(std::move(default_namespace)),
      metrics_(metrics),
      pusher_(pusher),
      docker_config_(std::move(docker_config)) {}

template <typename Request>
absl::StatusOr<images::RegistryClient*> DistributionService::ClientFor(
    const Context& ctx, const Request& request, absl::string_view reference,
    std::unique_ptr<images::RegistryClient>* own) const {
  images::RegistryClientOptions options = registry_options_;
  bool added = false;
  for (const std::string& host : request.plain_http_hosts()) {
    if (!options.hosts[host].plain_http) {
      options.hosts[host].plain_http = true;
      added = true;
    }
  }
  auto set = [&](const std::string& host, const images::RegistryCredentials& creds) {
    images::RegistryHostConfig& config = options.hosts[host];
    if (config.username != creds.username || config.password != creds.password ||
        config.identity_token != creds.identity_token) {
      config.username = creds.username;
      config.password = creds.password;
      config.identity_token = creds.identity_token;
      added = true;
    }
  };
  // The file's credentials for the reference's registry, then the request's over them.
  absl::StatusOr<images::Reference> ref = images::Reference::Parse(reference);
  if (ref.ok() && !docker_config_.empty()) {
    images::HelperLimits limits;
    limits.ctx = &ctx;  // a hung credential helper ends with the request at the latest
    absl::StatusOr<std::optional<images::RegistryCredentials>> creds =
        images::LookupCredentials(docker_config_, ref->domain, limits);
    if (!creds.ok()) {
      return creds.status();
    }
    if (creds->has_value()) {
      set(ref->domain, **creds);
    }
  }
  for (const pb::RegistryAuth& auth : request.auths()) {
    set(auth.host(),
        images::RegistryCredentials{auth.username(), auth.password(), auth.identity_token()});
  }
  if (!added) {
    return registry_.get();
  }
  *own = images::RegistryClient::Create(std::move(options));
  return own->get();
}

grpc::Status DistributionService::Pull(grpc::ServerContext* server_context,
                                       const pb::PullRequest* request,
                                       grpc::ServerWriter<pb::PullProgress>* writer) {
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  std::unique_ptr<images::RegistryClient> own;
  absl::StatusOr<images::RegistryClient*> registry =
      ClientFor(*ctx, *request, request->reference(), &own);
  if (!registry.ok()) {
    return ToGrpcStatus(registry.status());
  }

  PullRequest pull;
  pull.reference = request->reference();
  pull.platform = request->platform();
  pull.all_platforms = request->all_platforms();
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
      puller_.Pull(*ctx, **registry, pull, [writer, &counter](const BlobEvent& event) {
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

grpc::Status DistributionService::Push(grpc::ServerContext* server_context,
                                       const pb::PushRequest* request,
                                       grpc::ServerWriter<pb::PushProgress>* writer) {
  if (pusher_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this imaged does not push");
  }
  absl::StatusOr<Context> ctx = server::ContextFrom(*server_context, default_namespace_);
  if (!ctx.ok()) {
    return ToGrpcStatus(ctx.status());
  }
  if (request->name().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "push: no image name");
  }
  std::unique_ptr<images::RegistryClient> own;
  absl::StatusOr<images::RegistryClient*> registry = ClientFor(
      *ctx, *request, request->reference().empty() ? request->name() : request->reference(), &own);
  if (!registry.ok()) {
    return ToGrpcStatus(registry.status());
  }
  PushRequest push{request->name(), request->reference()};
  absl::StatusOr<Pusher::Result> pushed =
      pusher_->Push(*ctx, **registry, push, [writer](const BlobEvent& event) {
        pb::PushProgress message;
        BlobToProto(event, message.add_blobs());
        writer->Write(message);
      });
  if (!pushed.ok()) {
    return ToGrpcStatus(pushed.status());
  }
  pb::PushProgress last;
  last.mutable_image()->set_reference(pushed->reference);
  *last.mutable_image()->mutable_target() = diff::DescriptorToProto(pushed->target);
  writer->Write(last);
  return grpc::Status::OK;
}

}  // namespace berth::imaged
