#include "lib/server/daemon_publisher.h"

#include "absl/strings/str_cat.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"

namespace berth::server {

absl::StatusOr<std::unique_ptr<events::NatsPublisher>> OpenDaemonPublisher(
    const config::CommonOptions& options, Daemon& daemon) {
  BERTH_RETURN_IF_ERROR(MakeDirs(options.root, 0700));
  events::NatsPublisherOptions publisher_options;
  publisher_options.outbox_path = options.root + "/events-outbox.db";
  publisher_options.url = options.nats_url;
  publisher_options.credentials = options.nats_credentials;
  publisher_options.tls = options.nats_tls;
  publisher_options.client_name = options.daemon;
  publisher_options.metrics = daemon.metrics();
  publisher_options.metric_labels = {{"daemon", options.daemon}};
  absl::StatusOr<std::unique_ptr<events::NatsPublisher>> publisher =
      events::NatsPublisher::Open(publisher_options);
  if (!publisher.ok()) {
    return absl::Status(publisher.status().code(),
                        absl::StrCat("events outbox: ", publisher.status().message()));
  }
  return publisher;
}

}  // namespace berth::server
