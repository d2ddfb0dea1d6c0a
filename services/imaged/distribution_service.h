#pragma once

// imaged's berth.distribution.v1.Distribution server over a Puller. Pull streams one message
// per blob state change (DOWNLOADING at most every PullerOptions::progress_step bytes) and a
// last one with the image; an error ends the stream with its code (ToGrpcStatus).
//
// Push streams the same BlobProgress states (UPLOADING, MOUNTED, EXISTS, DONE) and a last
// message with what was pushed; it answers Unimplemented when the service has no Pusher.
//
// Registry hosts: the client made from `registry_options` serves every pull and push; a request
// that names plain-HTTP hosts those options do not already make plain, or that carries
// credentials, or whose registry has credentials in `docker_config` (a docker-style
// config.json, read at each request so a new login counts at once; empty: none), gets a client
// of its own with them added. Credentials on the request win over the file's. Thread-safe.
//
// Metrics (when given PullMetrics): each pull's blobs and bytes from its progress, and its
// duration by result. Registry requests are counted by the RegistryClientOptions::on_response
// the caller sets.

#include <memory>

#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "lib/images/registry_client.h"
#include "services/imaged/exporter.h"
#include "services/imaged/importer.h"
#include "services/imaged/pull_metrics.h"
#include "services/imaged/puller.h"
#include "services/imaged/pusher.h"

namespace berth::imaged {

class DistributionService final : public ::berth::distribution::v1::Distribution::Service {
 public:
  // `puller` and `metrics` (null: none) must outlive the service.
  // `pusher` (null: Push is Unimplemented) must outlive the service too.
  DistributionService(Puller& puller, images::RegistryClientOptions registry_options,
                      std::string default_namespace, PullMetrics* metrics = nullptr,
                      Pusher* pusher = nullptr, std::string docker_config = "");
  DistributionService(const DistributionService&) = delete;
  DistributionService& operator=(const DistributionService&) = delete;

  grpc::Status Pull(grpc::ServerContext* server_context,
                    const ::berth::distribution::v1::PullRequest* request,
                    grpc::ServerWriter<::berth::distribution::v1::PullProgress>* writer) override;

 grpc::Status Push(grpc::ServerContext* server_context,
                    const ::berth::distribution::v1::PushRequest* request,
                    grpc::ServerWriter<::berth::distribution::v1::PushProgress>* writer) override;
  // Import and Export are served once these are set (before serving; both must outlive the
  // service); Unimplemented until then. Import reads the options from the first message and
  // the tarball from every message's data until the client half-closes.
  void ServeArchives(Importer* importer, Exporter* exporter) {
    importer_ = importer;
    exporter_ = exporter;
  }
  grpc::Status Import(grpc::ServerContext* server_context,
                      grpc::ServerReaderWriter<::berth::distribution::v1::ImportProgress,
                                               ::berth::distribution::v1::ImportRequest>* stream)
      override;
  grpc::Status Export(grpc::ServerContext* server_context,
                      const ::berth::distribution::v1::ExportRequest* request,
                      grpc::ServerWriter<::berth::distribution::v1::ExportChunk>* writer) override;

 private:
  // The client for a request: the shared one, or one of its own (see above) kept in *own.
  template <typename Request>
  absl::StatusOr<images::RegistryClient*> ClientFor(
      const Context& ctx, const Request& request, absl::string_view reference,
      std::unique_ptr<images::RegistryClient>* own) const;

  Puller& puller_;
  const images::RegistryClientOptions registry_options_;
  const std::unique_ptr<images::RegistryClient> registry_;
  const std::string default_namespace_;
  PullMetrics* const metrics_;
  Pusher* const pusher_;
  const std::string docker_config_;
  Importer* importer_ = nullptr;
  Exporter* exporter_ = nullptr;
};

// One blob's state change on the wire (Pull's and Import's progress).
void BlobToProto(const BlobEvent& event, ::berth::distribution::v1::BlobProgress* blob);

}  // namespace berth::imaged
